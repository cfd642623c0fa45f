//! Injected NVMe faults (ENOSPC, EIO, short reads and writes, corruption)
//! on both I/O paths: each returns an error naming what failed, and the
//! object stays, intact, in the tier it was in.

mod common;

use common::{content, io_paths, pager_with, put};
use memwall_tiers::nvme::{Fault, IoOp};
use memwall_tiers::{ObjectClass, ObjectId, ObjectSpec, Tier, TierError};

const SIZE: usize = 40_000;

#[test]
fn write_back_faults_keep_the_victim_in_ddr() {
    for (path, io) in io_paths() {
        for (fault, errno) in
            [(Fault::NoSpace, Some(libc::ENOSPC)), (Fault::Eio, Some(libc::EIO)), (Fault::Short, None)]
        {
            let t = pager_with(2 * 40_960, 1 << 24, |c| c.nvme.io = io);
            let p = &t.pager;
            let a = put(p, 1, SIZE, 0);
            let b = put(p, 2, SIZE, 0);
            let ddr_used = p.stats().tier(Tier::Ddr).used;
            // Inserting 3 must evict 1 (LRU), whose write-back fails.
            t.faults.inject_after(IoOp::Write, fault, 1, 1);
            p.register(ObjectSpec::new(3, SIZE, ObjectClass::Other)).unwrap();
            let e = p.insert(ObjectId(3), &content(3, 0, SIZE)).unwrap_err();
            let msg = e.to_string();
            assert_eq!(e.os_error(), errno, "{path} {fault:?}: {msg}");
            assert!(
                matches!(&e, TierError::Eviction { id: ObjectId(3), victim: ObjectId(1), tier: Tier::Ddr, .. }),
                "{path} {fault:?}: {msg}"
            );
            assert!(msg.contains("object 1") && msg.contains("from DDR to NVMe") && msg.contains("NVMe"), "{msg}");
            if fault == Fault::Short {
                assert!(matches!(e.root(), TierError::ShortIo { op: "write", .. }), "{msg}");
            }
            let s1 = p.status(ObjectId(1)).unwrap();
            assert_eq!((s1.resident, s1.dirty), (vec![Tier::Ddr], vec![Tier::Ddr]), "{path} {fault:?}");
            assert_eq!(p.status(ObjectId(3)).unwrap().resident, Vec::<Tier>::new());
            let st = p.stats();
            assert_eq!(st.tier(Tier::Ddr).used, ddr_used, "no reservation leaked");
            assert_eq!(st.tier(Tier::Nvme).used, 0, "the failed extent is not counted");
            assert_eq!(p.read(ObjectId(1)).unwrap(), a);
            assert_eq!(p.read(ObjectId(2)).unwrap(), b);
            // With the fault gone, the same insert succeeds and 1 is written back.
            p.insert(ObjectId(3), &content(3, 0, SIZE)).unwrap();
            assert_eq!(p.status(ObjectId(1)).unwrap().resident, vec![Tier::Nvme]);
            assert_eq!(p.read(ObjectId(1)).unwrap(), a);
        }
    }
}

#[test]
fn flush_and_evict_faults_leave_the_object_in_place() {
    for (path, io) in io_paths() {
        let t = pager_with(1 << 20, 1 << 24, |c| c.nvme.io = io);
        let p = &t.pager;
        let a = put(p, 7, SIZE, 1);
        t.faults.inject(IoOp::Write, Fault::NoSpace, 1);
        let e = p.flush(ObjectId(7)).unwrap_err();
        assert!(
            matches!(&e, TierError::Transfer { id: ObjectId(7), from: Tier::Ddr, to: Tier::Nvme, .. }),
            "{path}: {e}"
        );
        assert!(e.to_string().contains("No space left on device"), "{e}");
        t.faults.inject(IoOp::Write, Fault::Short, 1);
        let e = p.evict(ObjectId(7), Tier::Ddr).unwrap_err();
        assert!(matches!(e.root(), TierError::ShortIo { .. }), "{path}: {e}");
        assert_eq!(p.status(ObjectId(7)).unwrap().resident, vec![Tier::Ddr]);
        assert_eq!(p.read(ObjectId(7)).unwrap(), a);
        assert!(p.flush(ObjectId(7)).unwrap());
    }
}

#[test]
fn read_faults_keep_the_object_on_nvme() {
    for (path, io) in io_paths() {
        for fault in [Fault::Eio, Fault::Short, Fault::Corrupt] {
            let t = pager_with(1 << 20, 1 << 24, |c| c.nvme.io = io);
            let p = &t.pager;
            let a = put(p, 4, SIZE, 2);
            p.evict(ObjectId(4), Tier::Ddr).unwrap();
            let ddr_used = p.stats().tier(Tier::Ddr).used;
            t.faults.inject(IoOp::Read, fault, 1);
            let e = p.pin(ObjectId(4), Tier::Ddr).unwrap_err();
            assert!(
                matches!(&e, TierError::Transfer { id: ObjectId(4), from: Tier::Nvme, to: Tier::Ddr, .. }),
                "{path} {fault:?}: {e}"
            );
            match fault {
                Fault::Eio => assert_eq!(e.os_error(), Some(libc::EIO), "{e}"),
                Fault::Short => assert!(matches!(e.root(), TierError::ShortIo { op: "read", .. }), "{e}"),
                _ => assert!(matches!(e.root(), TierError::Checksum { .. }), "{e}"),
            }
            assert_eq!(p.status(ObjectId(4)).unwrap().resident, vec![Tier::Nvme], "{path} {fault:?}");
            assert_eq!(p.stats().tier(Tier::Ddr).used, ddr_used, "the DDR reservation was returned");
            // Also through a prefetch ticket.
            t.faults.inject(IoOp::Read, fault, 1);
            assert!(p.prefetch(ObjectId(4), Tier::Ddr).wait().is_err());
            assert_eq!(p.read(ObjectId(4)).unwrap(), a, "{path} {fault:?}: a retry reads good data");
        }
    }
}

#[test]
fn faults_during_a_write_back_chain_lose_nothing() {
    // DDR holds one object; moving objects around forces write-backs while
    // every third NVMe write fails.
    for (path, io) in io_paths() {
        let t = pager_with(40_960, 1 << 24, |c| c.nvme.io = io);
        let p = &t.pager;
        let mut expected = Vec::new();
        for id in 0..6u64 {
            p.register(ObjectSpec::new(id, SIZE, ObjectClass::Other)).unwrap();
            expected.push(content(id, 9, SIZE));
        }
        let mut failures = 0;
        for round in 0..3u32 {
            t.faults.inject_after(IoOp::Write, Fault::Eio, 2, 1);
            for id in 0..6u64 {
                if p.insert(ObjectId(id), &expected[id as usize]).is_err() {
                    failures += 1;
                    // The failed insert changed nothing; do it again.
                    p.insert(ObjectId(id), &expected[id as usize]).unwrap();
                }
            }
            t.faults.clear();
            for id in 0..6u64 {
                assert_eq!(p.read(ObjectId(id)).unwrap(), expected[id as usize], "{path} round {round} object {id}");
            }
        }
        assert!(failures >= 1, "{path}: the injected faults hit");
    }
}
