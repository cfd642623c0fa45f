//! Run a real kernel (the 2-D strided copy) on the CPU emulator through the
//! same launch plan a GPU would run. `cargo run --example emulator --features emu`
use memwall::emu::{Emulator, HostBind};
use memwall::strided::StridedCopy;

fn main() -> memwall::Result<()> {
    let copy = StridedCopy::pack(4, 8, 16); // 4 rows of 8 bytes, 16 bytes apart
    let plan = copy.plan(8)?;
    println!("kernel {} grid {} block {}", plan.kernel, plan.grid, plan.block);
    let src: Vec<u64> = (0..8).collect();
    let mut dst = vec![0u64; 4];
    Emulator::new().launch(&plan, &mut [HostBind::read(&src), HostBind::write(&mut dst)])?;
    assert_eq!(dst, vec![0, 2, 4, 6]);
    println!("packed rows: {dst:?}");
    Ok(())
}
