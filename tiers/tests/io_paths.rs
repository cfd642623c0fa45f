//! Which NVMe I/O path is active, the fallbacks, and that each moves data
//! through the pager correctly.

mod common;

use common::{content, pager_with, put};
use memwall_tiers::config::{IoEngineChoice, Toggle};
use memwall_tiers::nvme::IoPath;
use memwall_tiers::{ObjectId, Pager, Tier};

fn round_trip(p: &Pager) {
    let data: Vec<Vec<u8>> = (0..4).map(|id| put(p, id, 100_000 + id as usize * 4096, id)).collect();
    for id in 0..4 {
        p.evict(ObjectId(id), Tier::Ddr).unwrap();
    }
    for id in 0..4 {
        assert_eq!(p.read(ObjectId(id)).unwrap(), data[id as usize]);
    }
}

#[test]
fn auto_uses_io_uring_or_says_why_not() {
    let t = pager_with(1 << 22, 1 << 26, |_| {});
    let info = t.pager.stats().nvme;
    match info.path {
        IoPath::IoUring { queue_depth, .. } => assert_eq!(queue_depth, 4),
        IoPath::Pread => assert!(info.notes.iter().any(|n| n.contains("io_uring refused")), "{info:?}"),
    }
    round_trip(&t.pager);
}

#[test]
fn pread_can_be_forced() {
    let t = pager_with(1 << 22, 1 << 26, |c| c.nvme.io = IoEngineChoice::Pread);
    let info = t.pager.stats().nvme;
    assert_eq!(info.path, IoPath::Pread);
    assert!(info.notes.iter().any(|n| n.contains("nvme.io = pread")), "{info:?}");
    round_trip(&t.pager);
}

#[test]
fn forced_io_uring_works_where_auto_found_it() {
    let auto = pager_with(1 << 22, 1 << 26, |_| {});
    let has_uring = matches!(auto.pager.stats().nvme.path, IoPath::IoUring { .. });
    let (mut c, _dir) = common::config(1 << 22, 1 << 26);
    c.nvme.io = IoEngineChoice::IoUring;
    match Pager::new(c) {
        Ok(p) => {
            assert!(has_uring);
            round_trip(&p);
        }
        Err(e) => {
            assert!(!has_uring, "{e}");
            assert!(e.to_string().contains("io_uring setup"), "{e}");
        }
    }
}

#[test]
fn registered_blocks_respect_the_memlock_budget() {
    // Objects take 100-116 KiB of pages each.
    for budget in [0u64, 4096, 250 << 10, u64::MAX] {
        let t = pager_with(1 << 22, 1 << 26, |c| c.nvme.memlock_budget = Some(budget));
        round_trip(&t.pager);
        let info = t.pager.stats().nvme;
        let IoPath::IoUring { registered_buffers, queue_depth } = info.path else { continue };
        assert_eq!(queue_depth, 4);
        assert_eq!(registered_buffers, budget > 0, "budget {budget}: {info:?}");
        if budget == 0 {
            assert!(info.notes.iter().any(|n| n.contains("memlock budget 0")), "{info:?}");
        }
        assert!(info.registered_bytes <= budget, "budget {budget}: {info:?}");
        let expected_blocks = match budget {
            0 | 4096 => 0,
            b if b == 250 << 10 => 2,
            // Every DDR block that moved stays registered (it is kept for
            // reuse).
            _ => 4,
        };
        assert_eq!(info.registered_blocks, expected_blocks, "budget {budget}: {info:?}");
    }
}

#[test]
fn registered_buffers_can_be_turned_off() {
    let t = pager_with(1 << 22, 1 << 26, |c| c.nvme.register_buffers = false);
    round_trip(&t.pager);
    let info = t.pager.stats().nvme;
    if let IoPath::IoUring { registered_buffers, .. } = info.path {
        assert!(!registered_buffers);
        assert_eq!(info.registered_blocks, 0);
        assert!(info.notes.iter().any(|n| n.contains("off in the config")), "{info:?}");
    }
}

#[test]
fn buffered_io_when_direct_is_off() {
    for io in [IoEngineChoice::Auto, IoEngineChoice::Pread] {
        let t = pager_with(1 << 22, 1 << 26, |c| {
            c.nvme.direct = Toggle::Off;
            c.nvme.io = io;
        });
        assert!(!t.pager.stats().nvme.direct);
        round_trip(&t.pager);
    }
    let t = pager_with(1 << 22, 1 << 26, |_| {});
    assert!(t.pager.stats().nvme.direct, "the temp dir's file system takes O_DIRECT");
}

#[test]
fn odd_sizes_and_many_blocks_survive_every_path() {
    for io in [IoEngineChoice::Auto, IoEngineChoice::Pread] {
        let t = pager_with(1 << 22, 1 << 26, |c| c.nvme.io = io);
        let p = &t.pager;
        for (id, len) in [(0u64, 1usize), (1, 4095), (2, 4097), (3, (16 << 10) * 7 + 3), (4, 1 << 20)] {
            let data = put(p, id, len, 5);
            p.evict(ObjectId(id), Tier::Ddr).unwrap();
            assert_eq!(p.read(ObjectId(id)).unwrap(), data, "len {len}");
            assert_eq!(p.read(ObjectId(id)).unwrap(), content(id, 5, len));
        }
    }
}
