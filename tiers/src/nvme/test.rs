use super::*;
use crate::config::Config;
use crate::ddr::HostBlock;

fn cfg(dir: &std::path::Path, io: IoEngineChoice) -> NvmeConfig {
    let mut c = Config::small(dir, 1 << 20, 1 << 30).nvme;
    c.io = io;
    c.block_size = 16 << 10;
    c.queue_depth = 4;
    c
}

fn pattern(len: usize, seed: u8) -> HostBlock {
    let mut b = HostBlock::new(len).unwrap();
    for (i, x) in b.bytes_mut().iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(13).wrapping_add(seed);
    }
    b
}

/// Every engine variant: io_uring registered, io_uring unregistered, pread.
fn variants() -> Vec<(&'static str, IoEngineChoice, Option<u64>)> {
    vec![
        ("uring-registered", IoEngineChoice::Auto, Some(u64::MAX)),
        ("uring-unregistered", IoEngineChoice::Auto, Some(0)),
        ("pread", IoEngineChoice::Pread, None),
    ]
}

#[test]
fn extents_coalesce_and_shrink_the_file() {
    let mut a = ExtentAllocator::default();
    let x = a.alloc(4096);
    let y = a.alloc(8192);
    let z = a.alloc(4096);
    assert_eq!((x, y, z, a.end()), (0, 4096, 12288, 16384));
    a.free(y, 8192);
    assert_eq!(a.free_bytes(), 8192);
    assert_eq!(a.alloc(4096), 4096, "first fit reuses the hole");
    a.free(4096, 4096);
    a.free(x, 4096);
    assert_eq!(a.free_bytes(), 12288, "three neighbours merged");
    a.free(z, 4096);
    assert_eq!((a.end(), a.free_bytes()), (0, 0), "freeing the tail shrinks the file");
}

#[test]
fn reserved_extents_carve_free_space_and_refuse_overlaps() {
    let mut a = ExtentAllocator::default();
    // Past the end: the gap becomes free space.
    a.reserve(8192, 4096).unwrap();
    assert_eq!((a.end(), a.free_bytes()), (12288, 8192));
    a.reserve(0, 4096).unwrap();
    assert_eq!(a.free_bytes(), 4096);
    assert!(a.reserve(0, 4096).is_err(), "in use");
    assert!(a.reserve(4096, 8192).is_err(), "runs into an extent in use");
    assert_eq!(a.free_bytes(), 4096, "a refused reservation changes nothing");
    assert_eq!(a.alloc(4096), 4096, "the hole left is still allocatable");
    assert_eq!(a.alloc(4096), 12288);
    assert!(a.reserve(u64::MAX - 10, 4096).is_err());
    // In the middle of a larger free range: both sides stay free.
    let mut b = ExtentAllocator::default();
    b.reserve(40960, 4096).unwrap();
    b.reserve(8192, 4096).unwrap();
    assert_eq!(b.free_bytes(), 36864);
    assert_eq!(b.alloc(8192), 0);
    assert_eq!(b.alloc(8192), 12288);
}

#[test]
fn every_engine_round_trips_and_verifies() {
    for (name, io, budget) in variants() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), io);
        c.memlock_budget = budget;
        let store = NvmeStore::open(&c, 2).unwrap();
        let info = store.info();
        match (name, &info.path) {
            ("uring-registered", IoPath::IoUring { registered_buffers, .. }) => assert!(*registered_buffers),
            ("uring-unregistered", IoPath::IoUring { registered_buffers, queue_depth }) => {
                assert_eq!((*registered_buffers, *queue_depth), (false, 4));
                assert!(info.notes.iter().any(|n| n.contains("memlock budget 0")), "{:?}", info.notes);
            }
            ("pread", IoPath::Pread) => {}
            // io_uring refused by this kernel: the fallback must say why.
            (_, IoPath::Pread) => assert!(info.notes.iter().any(|n| n.contains("io_uring refused")), "{info:?}"),
            _ => panic!("{name}: unexpected {info:?}"),
        }
        for (i, len) in [1usize, 4096, 5000, 16 << 10, (16 << 10) * 5 + 100].into_iter().enumerate() {
            let src = pattern(len, i as u8);
            let copy = store.write(&src).unwrap();
            assert_eq!(copy.len(), src.padded_len());
            let mut back = HostBlock::new(len).unwrap();
            store.read(&copy, &mut back).unwrap();
            assert_eq!(back.bytes(), src.bytes(), "{name} len {len}");
            let info = store.info();
            let both = (src.padded_len() + back.padded_len()) as u64;
            if name == "uring-registered" && matches!(info.path, IoPath::IoUring { .. }) {
                assert_eq!((info.registered_blocks, info.registered_bytes), (2, both), "{name}");
            } else {
                assert_eq!((info.registered_blocks, info.registered_bytes), (0, 0), "{name}");
            }
        }
        assert_eq!(store.info().registered_blocks, 0, "{name}: dropped blocks unregister");
    }
}

#[test]
fn registered_blocks_stay_within_the_budget_and_unregister_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), IoEngineChoice::Auto);
    c.memlock_budget = Some(3 * 4096);
    let store = NvmeStore::open(&c, 2).unwrap();
    if !matches!(store.info().path, IoPath::IoUring { registered_buffers: true, .. }) {
        return; // io_uring refused here: nothing to register.
    }
    let blocks: Vec<HostBlock> = (0..5).map(|i| pattern(4096, i)).collect();
    let copies: Vec<NvmeCopy> = blocks.iter().map(|b| store.write(b).unwrap()).collect();
    let info = store.info();
    assert_eq!((info.registered_blocks, info.registered_bytes, info.memlock_budget), (3, 3 * 4096, 3 * 4096));
    assert_eq!(blocks.iter().filter(|b| b.registration().is_some()).count(), 3);
    // Unregistered blocks still move, zero-copy, through plain requests.
    for (b, copy) in blocks.iter().zip(&copies) {
        let mut back = HostBlock::new(4096).unwrap();
        store.read(copy, &mut back).unwrap();
        assert_eq!(back.bytes(), b.bytes());
    }
    drop(blocks);
    let info = store.info();
    assert_eq!((info.registered_blocks, info.registered_bytes), (0, 0), "dropped blocks free their slots");
    // A registered block outliving the store keeps the ring alive and
    // unregisters cleanly later.
    let survivor = pattern(8192, 1);
    let copy = store.write(&survivor).unwrap();
    let _ = copy;
    drop(store);
    drop(survivor);
}

#[test]
fn corrupted_blocks_fail_the_checksum_on_every_engine() {
    for (name, io, budget) in variants() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), io);
        c.memlock_budget = budget;
        let faults = c.faults.clone();
        let store = NvmeStore::open(&c, 2).unwrap();
        let src = pattern(40 << 10, 3);
        let copy = store.write(&src).unwrap();
        // The second request to complete (io_uring completes out of order)
        // comes back with a flipped byte.
        faults.inject_after(IoOp::Read, Fault::Corrupt, 1, 1);
        let mut back = HostBlock::new(src.len()).unwrap();
        let e = store.read(&copy, &mut back).unwrap_err();
        match &e {
            TierError::Checksum { offset, len, expected, found, .. } => {
                let k = (*offset - copy.offset()) / (16 << 10);
                assert_eq!(*offset, copy.offset() + k * (16 << 10), "{name}: a block boundary");
                assert!(k < 3, "{name}: inside the extent");
                assert_eq!(*len, if k == 2 { 8 << 10 } else { 16 << 10 });
                assert_ne!(expected, found);
            }
            other => panic!("{name}: expected a checksum error, got {other}"),
        }
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        // The extent itself is intact: the next read verifies.
        store.read(&copy, &mut back).unwrap();
        assert_eq!(back.bytes(), src.bytes());
    }
}

#[test]
fn checksums_catch_corruption_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = NvmeStore::open(&cfg(dir.path(), IoEngineChoice::Auto), 2).unwrap();
    let src = pattern(8192, 1);
    let copy = store.write(&src).unwrap();
    let path = store.info().file;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_at(&[0xEE], copy.offset() + 4100).unwrap();
        f.sync_all().unwrap();
    }
    let mut back = HostBlock::new(8192).unwrap();
    // With O_DIRECT the read sees the device; a buffered write above may sit
    // in the page cache, which direct reads also see after sync_all.
    let e = store.read(&copy, &mut back).unwrap_err();
    assert!(matches!(e, TierError::Checksum { .. }), "{e}");
}

#[test]
fn write_faults_return_errors_and_free_the_extent() {
    for (name, io, budget) in variants() {
        for (fault, errno) in
            [(Fault::NoSpace, Some(libc::ENOSPC)), (Fault::Eio, Some(libc::EIO)), (Fault::Short, None)]
        {
            let dir = tempfile::tempdir().unwrap();
            let mut c = cfg(dir.path(), io);
            c.memlock_budget = budget;
            let faults = c.faults.clone();
            let store = NvmeStore::open(&c, 2).unwrap();
            let keep = store.write(&pattern(4096, 9)).unwrap();
            let end = store.extent_end();
            faults.inject_after(IoOp::Write, fault, 2, 1);
            let e = store.write(&pattern(100 << 10, 1)).unwrap_err();
            assert_eq!(e.os_error(), errno, "{name} {fault:?}: {e}");
            if fault == Fault::Short {
                assert!(matches!(e, TierError::ShortIo { op: "write", .. }), "{e}");
            }
            assert!(e.to_string().contains(&store.info().file.display().to_string()), "{e}");
            assert_eq!(store.extent_end(), end, "{name} {fault:?}: the failed extent is freed");
            assert_eq!(faults.injected(), 1);
            // Earlier data is untouched, and the store still works.
            let mut back = HostBlock::new(4096).unwrap();
            store.read(&keep, &mut back).unwrap();
            assert_eq!(back.bytes(), pattern(4096, 9).bytes());
            let again = store.write(&pattern(100 << 10, 1)).unwrap();
            let mut back = HostBlock::new(100 << 10).unwrap();
            store.read(&again, &mut back).unwrap();
            assert_eq!(back.bytes(), pattern(100 << 10, 1).bytes());
        }
    }
}

#[test]
fn read_faults_return_errors() {
    for (name, io, budget) in variants() {
        for (fault, errno) in [(Fault::Eio, Some(libc::EIO)), (Fault::Short, None)] {
            let dir = tempfile::tempdir().unwrap();
            let mut c = cfg(dir.path(), io);
            c.memlock_budget = budget;
            let faults = c.faults.clone();
            let store = NvmeStore::open(&c, 2).unwrap();
            let copy = store.write(&pattern(64 << 10, 2)).unwrap();
            faults.inject(IoOp::Read, fault, 1);
            let mut back = HostBlock::new(64 << 10).unwrap();
            let e = store.read(&copy, &mut back).unwrap_err();
            assert_eq!(e.os_error(), errno, "{name} {fault:?}: {e}");
            if fault == Fault::Short {
                assert!(
                    matches!(e, TierError::ShortIo { op: "read", got, expected, .. } if got * 2 == expected),
                    "{e}"
                );
            }
            store.read(&copy, &mut back).unwrap();
            assert_eq!(back.bytes(), pattern(64 << 10, 2).bytes());
        }
    }
}

#[test]
fn direct_io_rejected_midway_reopens_buffered() {
    for (name, io, budget) in variants() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), io);
        c.memlock_budget = budget;
        let faults = c.faults.clone();
        let store = NvmeStore::open(&c, 2).unwrap();
        assert!(store.info().direct, "{name}: ext4/tmpfs take O_DIRECT");
        faults.inject(IoOp::Write, Fault::DirectRejected, 1);
        let src = pattern(50_000, 4);
        let copy = store.write(&src).unwrap();
        let info = store.info();
        assert!(!info.direct, "{name}");
        assert!(info.notes.iter().any(|n| n.contains("O_DIRECT rejected")), "{info:?}");
        let mut back = HostBlock::new(src.len()).unwrap();
        store.read(&copy, &mut back).unwrap();
        assert_eq!(back.bytes(), src.bytes());
    }
}

#[test]
fn forced_direct_io_does_not_fall_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), IoEngineChoice::Pread);
    c.direct = crate::config::Toggle::On;
    let faults = c.faults.clone();
    let store = NvmeStore::open(&c, 2).unwrap();
    faults.inject(IoOp::Write, Fault::DirectRejected, 1);
    let e = store.write(&pattern(4096, 0)).unwrap_err();
    assert_eq!(e.os_error(), Some(libc::EINVAL), "{e}");
    assert!(store.info().direct);
}

#[test]
fn buffered_mode_is_chosen_when_direct_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), IoEngineChoice::Auto);
    c.direct = crate::config::Toggle::Off;
    let store = NvmeStore::open(&c, 2).unwrap();
    assert!(!store.info().direct);
    let src = pattern(10_000, 5);
    let copy = store.write(&src).unwrap();
    let mut back = HostBlock::new(10_000).unwrap();
    store.read(&copy, &mut back).unwrap();
    assert_eq!(back.bytes(), src.bytes());
}

#[test]
fn fault_rules_skip_count_and_clear() {
    let f = FaultInjector::new();
    assert!(!f.is_armed());
    f.inject_after(IoOp::Read, Fault::Eio, 1, 2);
    assert_eq!(f.next(IoOp::Write), None);
    assert_eq!(f.next(IoOp::Read), None);
    assert_eq!(f.next(IoOp::Read), Some(Fault::Eio));
    assert_eq!(f.next(IoOp::Read), Some(Fault::Eio));
    assert_eq!(f.next(IoOp::Read), None);
    assert!(!f.is_armed());
    f.inject(IoOp::Write, Fault::NoSpace, 5);
    f.clear();
    assert_eq!(f.next(IoOp::Write), None);
    assert_eq!(f.injected(), 2);
}

#[test]
fn the_data_file_is_removed_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = NvmeStore::open(&cfg(dir.path(), IoEngineChoice::Auto), 2).unwrap();
    let path = store.info().file;
    assert!(path.exists());
    drop(store);
    assert!(!path.exists());
}

#[test]
fn a_named_data_file_is_kept_and_reopened_without_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path(), IoEngineChoice::Auto);
    c.file = Some(dir.path().join("keep.data"));
    let store = NvmeStore::open(&c, 2).unwrap();
    let copy = store.write(&pattern(20_000, 5)).unwrap();
    let extent = copy.extent(store.block_size());
    store.sync().unwrap();
    drop(store);
    assert!(dir.path().join("keep.data").exists());
    let store = NvmeStore::open(&c, 2).unwrap();
    let adopted = store.adopt(&extent, copy.len()).unwrap();
    let mut back = HostBlock::new(20_000).unwrap();
    store.read(&adopted, &mut back).unwrap();
    assert_eq!(back.bytes(), pattern(20_000, 5).bytes());
    assert!(store.adopt(&extent, copy.len()).unwrap_err().contains("overlaps"));
    let mut wrong = extent.clone();
    wrong.block_size *= 2;
    assert!(store.adopt(&wrong, copy.len()).unwrap_err().contains("block size"));
    let mut wrong = extent.clone();
    wrong.crcs.pop();
    assert!(store.adopt(&wrong, copy.len()).unwrap_err().contains("block checksums"));
    assert!(store.adopt(&extent, copy.len() + 4096).unwrap_err().contains("padded size"));
    drop(store);
    assert!(dir.path().join("keep.data").exists());
}

#[test]
fn a_transfer_takes_a_free_lane_while_another_lane_is_busy() {
    for (name, io, budget) in variants() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), io);
        c.memlock_budget = budget;
        let store = NvmeStore::open(&c, 2).unwrap();
        assert_eq!(store.info().lanes, 2, "{name}");
        let src = pattern(70_000, 3);
        let copy = store.write(&src).unwrap();
        // Hold each lane in turn (lane 0 holds the registered ring, which a
        // registered block prefers); the read must finish on the other one.
        for busy in 0..2 {
            let held = store.lanes.lock(busy);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut back = HostBlock::new(src.len()).unwrap();
                    let r = store.read(&copy, &mut back).map(|()| back.bytes() == src.bytes());
                    tx.send(r).unwrap();
                });
                let got = rx.recv_timeout(std::time::Duration::from_secs(20));
                drop(held);
                assert!(matches!(got, Ok(Ok(true))), "{name}, lane {busy} busy: {got:?}");
            });
        }
    }
}

#[test]
fn concurrent_transfers_on_several_lanes_keep_every_object_intact() {
    let dir = tempfile::tempdir().unwrap();
    let store = NvmeStore::open(&cfg(dir.path(), IoEngineChoice::Auto), 3).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let store = &store;
            s.spawn(move || {
                let mut kept = Vec::new();
                for i in 0..12u8 {
                    let len = 4096 * (1 + usize::from(i % 5)) + usize::from(t) * 77;
                    let src = pattern(len, t.wrapping_mul(31).wrapping_add(i));
                    kept.push((store.write(&src).unwrap(), src));
                    // Read back an earlier object while others write.
                    let (copy, src) = &kept[usize::from(i) / 2];
                    let mut back = HostBlock::new(src.len()).unwrap();
                    store.read(copy, &mut back).unwrap();
                    assert_eq!(back.bytes(), src.bytes(), "thread {t} object {i}");
                }
                for (copy, _) in &kept {
                    store.free(copy);
                }
            });
        }
    });
    assert_eq!(store.extent_end(), 0, "every extent freed");
}
