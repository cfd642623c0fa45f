//! The HBM tier on a real device (skipped without one) and its absence on a
//! CPU-only machine.

mod common;

use common::{content, pager_with, put};
use memwall_tiers::config::{Capacity, Toggle};
use memwall_tiers::memwall::gpu::{gpu_or_skip, Gpu};
use memwall_tiers::{ObjectClass, ObjectId, ObjectSpec, Tier, TierError};

const SIZE: usize = 65_536;

fn hbm_pager(hbm_objects: u64) -> common::TestPager {
    pager_with(1 << 22, 1 << 26, |c| {
        c.hbm.enabled = Toggle::On;
        c.hbm.capacity = Capacity::Bytes(hbm_objects * SIZE as u64);
    })
}

#[test]
fn hbm_forced_on_without_a_device_fails_clearly() {
    if Gpu::new(0).is_ok() {
        return;
    }
    let (mut c, _dir) = common::config(1 << 22, 1 << 26);
    c.hbm.enabled = Toggle::On;
    let e = memwall_tiers::Pager::new(c).unwrap_err();
    assert!(matches!(e, TierError::TierUnavailable { tier: Tier::Hbm, .. }), "{e}");
    assert!(e.to_string().contains("hbm.enabled = on"), "{e}");
}

#[test]
fn gpu_pager_pins_fetches_and_evicts_through_hbm() {
    let Some(gpu) = gpu_or_skip("gpu_pager_pins_fetches_and_evicts_through_hbm") else { return };
    drop(gpu);
    let t = hbm_pager(3);
    let p = &t.pager;
    assert_eq!(p.tiers(), vec![Tier::Hbm, Tier::Ddr, Tier::Nvme]);
    assert!(p.stats().ddr_pinned, "DDR is pinned when the HBM tier is on");
    let data: Vec<Vec<u8>> = (0..4).map(|id| put(p, id, SIZE, id)).collect();

    p.fetch(ObjectId(0), Tier::Hbm).unwrap();
    assert_eq!(p.status(ObjectId(0)).unwrap().resident, vec![Tier::Hbm, Tier::Ddr]);
    {
        let pin = p.pin(ObjectId(0), Tier::Hbm).unwrap();
        assert_eq!(pin.device().unwrap().len(), SIZE);
        assert!(pin.bytes().is_err(), "no host view of HBM");
    }
    // HBM holds three: the fourth evicts the LRU (0), which is clean.
    for id in 1..4 {
        p.fetch(ObjectId(id), Tier::Hbm).unwrap();
    }
    assert_eq!(p.status(ObjectId(0)).unwrap().resident, vec![Tier::Ddr]);
    assert_eq!(p.stats().tier(Tier::Hbm).write_backs, 0);

    // A dirty HBM copy is written back to DDR before it is dropped.
    let changed = content(1, 77, SIZE);
    {
        let mut w = p.pin_mut(ObjectId(1), Tier::Hbm).unwrap();
        let stream = w.device().unwrap().slice().stream().clone();
        stream.memcpy_htod(&changed[..], w.device_mut().unwrap().slice_mut()).unwrap();
        stream.synchronize().unwrap();
    }
    let s = p.status(ObjectId(1)).unwrap();
    assert_eq!((s.resident, s.dirty), (vec![Tier::Hbm], vec![Tier::Hbm]));
    assert!(p.evict(ObjectId(1), Tier::Hbm).unwrap());
    assert_eq!(p.stats().tier(Tier::Hbm).write_backs, 1);
    assert_eq!(p.read(ObjectId(1)).unwrap(), changed);

    // NVMe -> HBM and HBM -> NVMe go through staging blocks.
    p.flush(ObjectId(2)).unwrap();
    p.evict(ObjectId(2), Tier::Hbm).unwrap();
    p.evict(ObjectId(2), Tier::Ddr).unwrap();
    p.fetch(ObjectId(2), Tier::Hbm).unwrap();
    assert_eq!(p.status(ObjectId(2)).unwrap().resident, vec![Tier::Hbm, Tier::Nvme]);
    drop(p.pin_mut(ObjectId(2), Tier::Hbm).unwrap());
    p.flush(ObjectId(2)).unwrap();
    assert_eq!(p.status(ObjectId(2)).unwrap().resident, vec![Tier::Hbm, Tier::Nvme]);
    p.evict(ObjectId(2), Tier::Hbm).unwrap();
    assert_eq!(p.read(ObjectId(2)).unwrap(), data[2]);

    // A zero-filled object materialises in HBM directly.
    p.register(ObjectSpec::new(9, 1000, ObjectClass::Expert)).unwrap();
    p.fetch(ObjectId(9), Tier::Hbm).unwrap();
    assert_eq!(p.read(ObjectId(9)).unwrap(), vec![0; 1000]);
    let st = p.stats();
    assert!(st.tier(Tier::Hbm).gbps_in() > 0.0 && st.tier(Tier::Hbm).hits >= 1, "{st}");
}

#[test]
fn gpu_concurrent_hbm_traffic_keeps_data() {
    let Some(gpu) = gpu_or_skip("gpu_concurrent_hbm_traffic_keeps_data") else { return };
    drop(gpu);
    let t = hbm_pager(4);
    let p = t.pager.clone();
    let data: Vec<Vec<u8>> = (0..12).map(|id| put(&p, id, SIZE, id)).collect();
    let handles: Vec<_> = (0..4u64)
        .map(|k| {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let id = ObjectId((i * 5 + k * 3) % 12);
                    let r = match i % 4 {
                        0 => p.fetch(id, Tier::Hbm),
                        1 => p.pin(id, Tier::Hbm).map(drop),
                        2 => p.evict(id, Tier::Hbm).map(drop),
                        _ => p.prefetch(id, Tier::Hbm).wait(),
                    };
                    if let Err(e) = r {
                        assert!(matches!(e.root(), TierError::PinConflict { .. } | TierError::TierFull { .. }), "{e}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for id in 0..12 {
        assert_eq!(p.read(ObjectId(id)).unwrap(), data[id as usize]);
    }
}
