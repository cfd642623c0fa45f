//! The README's tiers example: an object written to a DDR tier of 1 MiB
//! (so it spills to the NVMe tier), prefetched back while "computing", and
//! pinned for a typed view. `cargo run -p memwall-tiers --example pager`
use memwall_tiers::{Config, ObjectClass, ObjectId, ObjectSpec, Pager, Tier};

fn main() -> memwall_tiers::Result<()> {
    let dir = std::env::temp_dir().join(format!("memwall-pager-example-{}", std::process::id()));
    let pager = Pager::new(Config::small(&dir, 1 << 20, 64 << 20))?; // DDR 1 MiB, NVMe 64 MiB
    let weights: Vec<f32> = (0..(768 << 10) / 4).map(|i| i as f32).collect(); // 768 KiB
    pager.register(ObjectSpec::new(7, weights.len() * 4, ObjectClass::Expert))?;
    pager.insert(ObjectId(7), bytemuck::cast_slice(&weights))?;
    pager.evict(ObjectId(7), Tier::Ddr)?; // written back to NVMe
    let ticket = pager.prefetch(ObjectId(7), Tier::Ddr); // overlaps with the compute below
    let busy: f64 = (0..1_000_000).map(|i| f64::from(i).sqrt()).sum();
    ticket.wait()?;
    let pin = pager.pin(ObjectId(7), Tier::Ddr)?;
    let w: &[f32] = pin.view::<f32>()?;
    assert_eq!(w[12345], 12345.0);
    let s = pager.stats();
    println!(
        "busy {busy:.0}; DDR hits {} misses {}; NVMe I/O {} x {} lanes",
        s.tier(Tier::Ddr).hits,
        s.tier(Tier::Ddr).misses,
        s.nvme.path,
        s.nvme.lanes
    );
    drop(pin);
    drop(pager);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
