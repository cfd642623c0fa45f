//! A persistent data file (`nvme.file`): kept when the pager drops, and a
//! later pager adopts the extents an earlier one wrote (`nvme_extent`,
//! `adopt`), verifying their checksums on first read.

mod common;

use std::os::unix::fs::FileExt;

use common::{config, content};
use memwall_tiers::{ObjectClass, ObjectId, ObjectSpec, Pager, Tier, TierError};

const SIZE: usize = 50_000;

#[test]
fn a_later_pager_adopts_extents_from_a_kept_file() {
    let (mut c, dir) = config(1 << 20, 1 << 24);
    let file = dir.path().join("state.data");
    c.nvme.file = Some(file.clone());
    let mut extents = Vec::new();
    {
        let p = Pager::new(c.clone()).unwrap();
        for id in 0..3u64 {
            p.register(ObjectSpec::new(id, SIZE, ObjectClass::OptimizerState)).unwrap();
            p.insert(ObjectId(id), &content(id, 3, SIZE)).unwrap();
            assert_eq!(p.nvme_extent(ObjectId(id)).unwrap(), None, "not on NVMe yet");
        }
        // An asynchronous write-back, then sync: durable.
        p.prefetch(ObjectId(0), Tier::Nvme).wait().unwrap();
        p.flush_all().unwrap();
        p.sync().unwrap();
        for id in 0..3u64 {
            extents.push(p.nvme_extent(ObjectId(id)).unwrap().expect("flushed"));
        }
        assert!(extents[0].crcs.len() == SIZE.div_ceil(16 << 10));
    }
    assert!(file.exists(), "a named data file outlives its pager");
    let p = Pager::new(c.clone()).unwrap();
    for id in 0..3u64 {
        p.adopt(ObjectSpec::new(id, SIZE, ObjectClass::OptimizerState), &extents[id as usize]).unwrap();
        assert_eq!(p.status(ObjectId(id)).unwrap().resident, vec![Tier::Nvme]);
    }
    assert_eq!(p.stats().tier(Tier::Nvme).used, 3 * 53_248, "adopted extents count as used");
    // New writes never land on an adopted extent.
    p.register(ObjectSpec::new(9, SIZE, ObjectClass::Other)).unwrap();
    p.insert(ObjectId(9), &content(9, 0, SIZE)).unwrap();
    p.flush(ObjectId(9)).unwrap();
    let e9 = p.nvme_extent(ObjectId(9)).unwrap().unwrap();
    for e in &extents {
        assert!(e9.offset + e9.len <= e.offset || e.offset + e.len <= e9.offset, "{e9:?} overlaps {e:?}");
    }
    for id in 0..3u64 {
        assert_eq!(p.read(ObjectId(id)).unwrap(), content(id, 3, SIZE));
    }
    // Refusals: registered already, overlapping, wrong size.
    let e = p.adopt(ObjectSpec::new(1, SIZE, ObjectClass::Other), &extents[1]).unwrap_err();
    assert!(matches!(e, TierError::AlreadyRegistered { id: ObjectId(1), .. }), "{e}");
    let e = p.adopt(ObjectSpec::new(20, SIZE, ObjectClass::Other), &extents[1]).unwrap_err();
    assert!(matches!(&e, TierError::BadExtent { id: ObjectId(20), .. }), "{e}");
    assert!(e.to_string().contains("overlaps"), "{e}");
    assert!(p.status(ObjectId(20)).is_err(), "a refused adopt registers nothing");
    let e = p.adopt(ObjectSpec::new(21, 3 * SIZE, ObjectClass::Other), &extents[1]).unwrap_err();
    assert!(e.to_string().contains("padded size"), "{e}");
}

#[test]
fn corruption_in_an_adopted_extent_is_caught_on_read() {
    let (mut c, dir) = config(1 << 20, 1 << 24);
    let file = dir.path().join("state.data");
    c.nvme.file = Some(file.clone());
    let extent = {
        let p = Pager::new(c.clone()).unwrap();
        p.register(ObjectSpec::new(1, SIZE, ObjectClass::Other)).unwrap();
        p.insert(ObjectId(1), &content(1, 1, SIZE)).unwrap();
        p.flush(ObjectId(1)).unwrap();
        p.nvme_extent(ObjectId(1)).unwrap().unwrap()
    };
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&file).unwrap();
    let at = extent.offset + 20_000;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    f.sync_all().unwrap();
    let p = Pager::new(c).unwrap();
    p.adopt(ObjectSpec::new(1, SIZE, ObjectClass::Other), &extent).unwrap();
    let e = p.read(ObjectId(1)).unwrap_err();
    assert!(matches!(e.root(), TierError::Checksum { .. }), "{e}");
    assert!(e.to_string().contains("state.data"), "{e}");
}
