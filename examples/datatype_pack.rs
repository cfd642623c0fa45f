//! Pack the interior of a 3-D cube of doubles, as MPI_Type_create_subarray
//! describes it, then unpack it into an empty cube: the README's datatype
//! example. `cargo run --example datatype_pack`
use memwall::datatype::{Committed, Datatype, Order, Primitive};

fn main() -> memwall::Result<()> {
    let t = Datatype::named(Primitive::F64).subarray(&[16, 16, 16], &[8, 8, 4], &[4, 4, 6], Order::C)?;
    let c = Committed::new(&t)?;
    println!("canonical layout: {:?}", c.layout());
    let cube: Vec<u8> = (0..16 * 16 * 16 * 8).map(|i| (i % 251) as u8).collect();
    let mut packed = vec![0u8; c.pack_size(1)?];
    let mut position = 0;
    c.pack(&cube, 0, 1, &mut packed, &mut position)?;
    let mut back = vec![0u8; cube.len()];
    let mut pos = 0;
    c.unpack(&packed, &mut pos, &mut back, 0, 1)?;
    // Element (4 + i, 4 + j, 6 + k) came back; everything else stayed zero.
    let at = |i: usize, j: usize, k: usize| ((i * 16 + j) * 16 + k) * 8;
    assert_eq!(&back[at(5, 6, 7)..at(5, 6, 7) + 8], &cube[at(5, 6, 7)..at(5, 6, 7) + 8]);
    assert!(back[at(0, 0, 0)..at(0, 0, 0) + 8].iter().all(|&b| b == 0));
    println!("packed {position} bytes; unpack restored the sub-block");
    Ok(())
}
