//! The pager's behaviour on DDR + NVMe: placement, eviction with
//! write-back, pins and views, dirty tracking, prefetch, policies, stats and
//! the errors bad input gets.

mod common;

use common::{content, pager, pager_with, put};
use memwall_tiers::config::PolicyKind;
use memwall_tiers::policy::{Candidate, Policy};
use memwall_tiers::{Config, ObjectClass, ObjectId, ObjectSpec, Pager, Tier, TierError};

const K4: usize = 4096;

#[test]
fn cpu_only_default_config_runs_ddr_and_nvme() {
    let pager = Pager::new(Config::default()).unwrap();
    let tiers = pager.tiers();
    assert!(tiers.contains(&Tier::Ddr) && tiers.contains(&Tier::Nvme));
    if memwall_tiers::memwall::gpu::Gpu::new(0).is_err() {
        assert_eq!(tiers, vec![Tier::Ddr, Tier::Nvme]);
        assert_eq!(pager.capacity(Tier::Hbm), 0);
        let e = pager.fetch(ObjectId(1), Tier::Hbm).unwrap_err();
        assert!(matches!(e, TierError::TierUnavailable { tier: Tier::Hbm, .. }), "{e}");
    }
    assert!(pager.capacity(Tier::Ddr) > 0 && pager.capacity(Tier::Nvme) > 0);
    let stats = pager.stats();
    assert!(stats.nvme.file.starts_with(std::env::temp_dir().join("memwall-tiers")), "{:?}", stats.nvme.file);
    let data = put(&pager, 1, 10_000, 0);
    assert!(pager.evict(ObjectId(1), Tier::Ddr).unwrap());
    assert_eq!(pager.read(ObjectId(1)).unwrap(), data);
}

#[test]
fn registered_objects_read_as_zeros_until_written() {
    let t = pager(1 << 20, 1 << 24);
    t.pager.register(ObjectSpec::new(5, 3000, ObjectClass::KvBlock)).unwrap();
    assert_eq!(t.pager.status(ObjectId(5)).unwrap().resident, Vec::<Tier>::new());
    assert_eq!(t.pager.read(ObjectId(5)).unwrap(), vec![0u8; 3000]);
    t.pager.register(ObjectSpec::new(6, 3000, ObjectClass::KvBlock)).unwrap();
    t.pager.flush(ObjectId(6)).unwrap();
    assert_eq!(t.pager.status(ObjectId(6)).unwrap().resident, vec![Tier::Nvme]);
    assert_eq!(t.pager.read(ObjectId(6)).unwrap(), vec![0u8; 3000]);
}

#[test]
fn pins_give_typed_views() {
    let t = pager(1 << 20, 1 << 24);
    let p = &t.pager;
    p.register(ObjectSpec::new(1, 64 * 4, ObjectClass::OptimizerState)).unwrap();
    {
        let mut w = p.pin_mut(ObjectId(1), Tier::Ddr).unwrap();
        assert_eq!((w.id(), w.tier(), w.len()), (ObjectId(1), Tier::Ddr, 256));
        for (i, x) in w.view_mut::<f32>().unwrap().iter_mut().enumerate() {
            *x = i as f32 * 0.5;
        }
    }
    let r = p.pin(ObjectId(1), Tier::Ddr).unwrap();
    let floats = r.view::<f32>().unwrap();
    assert_eq!(floats.len(), 64);
    assert_eq!(floats[10], 5.0);
    let halves = r.view::<half::bf16>().unwrap();
    assert_eq!(halves.len(), 128);
    assert!(r.device().is_err(), "a DDR pin has no device view");
    drop(r);
    p.register(ObjectSpec::new(2, 6, ObjectClass::Other)).unwrap();
    let r = p.pin(ObjectId(2), Tier::Ddr).unwrap();
    let e = r.view::<u32>().unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("object 2") && msg.contains("u32") && msg.contains("6 bytes"), "{msg}");
}

#[test]
fn lru_eviction_writes_back_and_refetches() {
    // Room for three 4 KiB objects in DDR.
    let t = pager(3 * K4 as u64, 1 << 24);
    let p = &t.pager;
    let data: Vec<Vec<u8>> = (0..3).map(|i| put(p, i, K4, 1)).collect();
    // Use 0 so that 1 is the least recently used.
    drop(p.pin(ObjectId(0), Tier::Ddr).unwrap());
    let d3 = put(p, 3, K4, 1);
    let s1 = p.status(ObjectId(1)).unwrap();
    assert_eq!(s1.resident, vec![Tier::Nvme], "1 was evicted to NVMe");
    assert_eq!(s1.dirty, Vec::<Tier>::new(), "NVMe copies are never dirty");
    for id in [0, 2, 3] {
        assert!(p.status(ObjectId(id)).unwrap().is_in(Tier::Ddr), "{id} stays in DDR");
    }
    let st = p.stats();
    assert_eq!(st.tier(Tier::Ddr).write_backs, 1);
    assert_eq!(st.tier(Tier::Ddr).evictions, 1);
    assert_eq!(st.tier(Tier::Ddr).used, 3 * K4 as u64);
    // Bringing 1 back evicts the LRU among the rest (2), and 1's data is intact.
    let pin = p.pin(ObjectId(1), Tier::Ddr).unwrap();
    assert_eq!(pin.bytes().unwrap(), &data[1][..]);
    drop(pin);
    assert_eq!(p.status(ObjectId(2)).unwrap().resident, vec![Tier::Nvme]);
    // 1 now has copies in DDR and NVMe: it is clean in DDR.
    let s1 = p.status(ObjectId(1)).unwrap();
    assert_eq!((s1.resident, s1.dirty), (vec![Tier::Ddr, Tier::Nvme], vec![]));
    for (id, d) in [(0, &data[0]), (2, &data[2]), (3, &d3)] {
        assert_eq!(&p.read(ObjectId(id)).unwrap(), d);
    }
    let st = p.stats();
    assert!(st.tier(Tier::Ddr).misses >= 2 && st.tier(Tier::Ddr).hits >= 1, "{st}");
    assert!(st.tier(Tier::Nvme).bytes_in >= 2 * K4 as u64 && st.tier(Tier::Nvme).gbps_in() > 0.0, "{st}");
}

#[test]
fn clean_copies_are_dropped_without_write_back() {
    let t = pager(2 * K4 as u64, 1 << 24);
    let p = &t.pager;
    put(p, 0, K4, 0);
    put(p, 1, K4, 0);
    p.flush_all().unwrap();
    put(p, 2, K4, 0);
    assert_eq!(p.stats().tier(Tier::Ddr).write_backs, 0, "0 was clean: dropped, not written");
    assert_eq!(p.status(ObjectId(0)).unwrap().resident, vec![Tier::Nvme]);
}

#[test]
fn pinned_copies_stay_and_a_full_tier_says_so() {
    let t = pager(2 * K4 as u64, 1 << 24);
    let p = &t.pager;
    put(p, 0, K4, 0);
    put(p, 1, K4, 0);
    let _a = p.pin(ObjectId(0), Tier::Ddr).unwrap();
    let _b = p.pin(ObjectId(1), Tier::Ddr).unwrap();
    p.register(ObjectSpec::new(2, K4, ObjectClass::Other)).unwrap();
    let e = p.insert(ObjectId(2), &content(2, 0, K4)).unwrap_err();
    match &e {
        TierError::TierFull { tier: Tier::Ddr, id: ObjectId(2), unevictable: 2, requested, .. } => {
            assert_eq!(*requested, K4 as u64)
        }
        other => panic!("expected TierFull, got {other}"),
    }
    assert!(e.to_string().contains("DDR tier full"), "{e}");
    drop(_a);
    put_again(p, 2);
    assert!(p.status(ObjectId(1)).unwrap().is_in(Tier::Ddr), "the pinned one stayed");
    assert_eq!(p.status(ObjectId(0)).unwrap().resident, vec![Tier::Nvme]);
}

fn put_again(p: &Pager, id: u64) {
    p.insert(ObjectId(id), &content(id, 0, K4)).unwrap();
}

#[test]
fn pin_mut_drops_stale_copies_and_marks_dirty() {
    let t = pager(1 << 20, 1 << 24);
    let p = &t.pager;
    put(p, 7, 10_000, 0);
    p.flush(ObjectId(7)).unwrap();
    assert_eq!(p.status(ObjectId(7)).unwrap().dirty, Vec::<Tier>::new());
    let nvme_used = p.stats().tier(Tier::Nvme).used;
    {
        let mut w = p.pin_mut(ObjectId(7), Tier::Ddr).unwrap();
        w.bytes_mut().unwrap()[0..4].copy_from_slice(b"NEW!");
        let s = p.status(ObjectId(7)).unwrap();
        assert_eq!((s.resident, s.dirty, s.pinned), (vec![Tier::Ddr], vec![Tier::Ddr], vec![Tier::Ddr]));
    }
    assert_eq!(p.stats().tier(Tier::Nvme).used, nvme_used - 12288, "the stale NVMe extent is freed");
    // Evicting the dirty copy writes it back first.
    assert!(p.evict(ObjectId(7), Tier::Ddr).unwrap());
    assert_eq!(p.stats().tier(Tier::Ddr).write_backs, 1);
    let back = p.read(ObjectId(7)).unwrap();
    assert_eq!(&back[0..4], b"NEW!");
    assert_eq!(&back[4..], &content(7, 0, 10_000)[4..]);
}

#[test]
fn conflicting_pins_are_errors_not_deadlocks() {
    let t = pager(1 << 20, 1 << 24);
    let p = &t.pager;
    put(p, 1, K4, 0);
    let r = p.pin(ObjectId(1), Tier::Ddr).unwrap();
    let r2 = p.pin(ObjectId(1), Tier::Ddr).unwrap();
    let e = p.pin_mut(ObjectId(1), Tier::Ddr).unwrap_err();
    assert!(matches!(e, TierError::PinConflict { id: ObjectId(1), tier: Tier::Ddr, .. }), "{e}");
    assert!(matches!(p.evict(ObjectId(1), Tier::Ddr), Err(TierError::PinConflict { .. })));
    assert!(matches!(p.remove(ObjectId(1)), Err(TierError::PinConflict { .. })));
    assert!(matches!(p.insert(ObjectId(1), &[0; K4]), Err(TierError::PinConflict { .. })));
    // Reading it to NVMe while pinned for reading is fine.
    p.flush(ObjectId(1)).unwrap();
    drop((r, r2));
    let w = p.pin_mut(ObjectId(1), Tier::Ddr).unwrap();
    let e = p.pin(ObjectId(1), Tier::Ddr).unwrap_err();
    assert!(e.to_string().contains("pinned for writing"), "{e}");
    let e = p.flush(ObjectId(1)).unwrap_err();
    assert!(matches!(e, TierError::PinConflict { .. }), "{e}");
    drop(w);
    p.flush(ObjectId(1)).unwrap();
    p.remove(ObjectId(1)).unwrap();
    assert!(matches!(p.status(ObjectId(1)), Err(TierError::UnknownObject { .. })));
}

#[test]
fn the_only_copy_is_never_dropped() {
    let t = pager(1 << 20, 1 << 24);
    let p = &t.pager;
    put(p, 1, K4, 0);
    p.evict(ObjectId(1), Tier::Ddr).unwrap();
    let e = p.evict(ObjectId(1), Tier::Nvme).unwrap_err();
    assert!(matches!(e, TierError::WouldLoseData { id: ObjectId(1), tier: Tier::Nvme }), "{e}");
    assert_eq!(p.read(ObjectId(1)).unwrap(), content(1, 0, K4));
    // With a DDR copy too, the NVMe copy may go (DDR becomes dirty).
    assert!(p.evict(ObjectId(1), Tier::Nvme).unwrap());
    assert_eq!(p.status(ObjectId(1)).unwrap().dirty, vec![Tier::Ddr]);
    assert!(!p.evict(ObjectId(1), Tier::Nvme).unwrap(), "no copy there any more");
}

#[test]
fn a_full_nvme_tier_drops_clean_copies_then_refuses() {
    // NVMe holds two 4 KiB objects.
    let t = pager(1 << 20, 2 * K4 as u64);
    let p = &t.pager;
    for id in 0..3 {
        put(p, id, K4, 0);
    }
    p.flush(ObjectId(0)).unwrap();
    p.flush(ObjectId(1)).unwrap();
    // 0 and 1 also live in DDR, so one NVMe copy is dropped for 2.
    p.flush(ObjectId(2)).unwrap();
    assert!(p.status(ObjectId(2)).unwrap().is_in(Tier::Nvme));
    // Now make every NVMe copy the only copy: nothing can go.
    for id in 0..3 {
        if p.status(ObjectId(id)).unwrap().is_in(Tier::Nvme) {
            p.evict(ObjectId(id), Tier::Ddr).unwrap();
        }
    }
    let dirty_ddr = (0..3).find(|&id| !p.status(ObjectId(id)).unwrap().is_in(Tier::Nvme)).unwrap();
    let e = p.flush(ObjectId(dirty_ddr)).unwrap_err();
    assert!(matches!(e, TierError::TierFull { tier: Tier::Nvme, .. }), "{e}");
    for id in 0..3 {
        assert_eq!(p.read(ObjectId(id)).unwrap(), content(id, 0, K4), "{id} intact");
    }
}

#[test]
fn prefetch_runs_in_the_background_and_reports_errors() {
    let t = pager(1 << 22, 1 << 26);
    let p = &t.pager;
    let data = put(p, 1, 1 << 20, 3);
    p.evict(ObjectId(1), Tier::Ddr).unwrap();
    let ticket = p.prefetch(ObjectId(1), Tier::Ddr);
    assert_eq!((ticket.id(), ticket.tier()), (ObjectId(1), Tier::Ddr));
    ticket.wait().unwrap();
    let hits = p.stats().tier(Tier::Ddr).hits;
    let pin = p.pin(ObjectId(1), Tier::Ddr).unwrap();
    assert_eq!(p.stats().tier(Tier::Ddr).hits, hits + 1, "a prefetched object pins as a hit");
    assert_eq!(pin.bytes().unwrap(), &data[..]);
    let e = p.prefetch(ObjectId(99), Tier::Ddr).wait().unwrap_err();
    assert!(matches!(e, TierError::UnknownObject { id: ObjectId(99) }), "{e}");
    let ticket = p.prefetch(ObjectId(1), Tier::Nvme);
    assert!(ticket.wait_timeout(std::time::Duration::from_secs(10)));
    assert!(ticket.is_done());
    ticket.wait().unwrap();
}

#[test]
fn many_prefetches_finish_before_the_pager_drops() {
    let t = pager(1 << 22, 1 << 26);
    let p = t.pager.clone();
    for id in 0..16 {
        put(&p, id, 64 << 10, id);
        p.evict(ObjectId(id), Tier::Ddr).unwrap();
    }
    let tickets: Vec<_> = (0..16).map(|id| p.prefetch(ObjectId(id), Tier::Ddr)).collect();
    drop(p);
    for t in tickets {
        t.wait().unwrap();
    }
    for id in 0..16 {
        assert!(t.pager.status(ObjectId(id)).unwrap().is_in(Tier::Ddr));
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let t = pager(1 << 20, 1 << 20);
    let p = &t.pager;
    let e = p.register(ObjectSpec::new(1, 0, ObjectClass::Other)).unwrap_err();
    assert!(matches!(e, TierError::ZeroSize { id: ObjectId(1) }), "{e}");
    p.register(ObjectSpec::new(1, 100, ObjectClass::Other)).unwrap();
    let e = p.register(ObjectSpec::new(1, 200, ObjectClass::Other)).unwrap_err();
    assert!(e.to_string().contains("object 1 is already registered (size 100"), "{e}");
    let e = p.insert(ObjectId(1), &[0; 99]).unwrap_err();
    assert_eq!(e.to_string(), "object 1 is 100 bytes, but 99 bytes were given");
    let e = p.register(ObjectSpec::new(2, 2 << 20, ObjectClass::Other)).unwrap_err();
    assert!(matches!(e, TierError::TooLarge { tier: Tier::Nvme, .. }), "{e}");
    p.register(ObjectSpec::new(3, (1 << 20) + 1, ObjectClass::Other)).unwrap_err();
    let e = p.pin(ObjectId(42), Tier::Ddr).unwrap_err();
    assert_eq!(e.to_string(), "object 42 is not registered");
    let e = p.pin(ObjectId(1), Tier::Nvme).unwrap_err();
    assert!(matches!(e, TierError::NotViewable { tier: Tier::Nvme, .. }), "{e}");
    // DDR of 1 MiB cannot hold a 1 MiB + 1 object (padded to pages).
    let t2 = pager(1 << 20, 1 << 24);
    t2.pager.register(ObjectSpec::new(9, (1 << 20) + 1, ObjectClass::Other)).unwrap();
    let e = t2.pager.pin(ObjectId(9), Tier::Ddr).unwrap_err();
    assert!(e.to_string().contains("larger than the whole DDR tier"), "{e}");
    let e = Pager::new({
        let mut c = common::config(1, 1).0;
        c.nvme.queue_depth = 0;
        c
    })
    .unwrap_err();
    assert!(e.to_string().contains("nvme.queue_depth"), "{e}");
}

#[test]
fn class_policy_evicts_optimizer_state_before_experts() {
    let t = pager_with(3 * K4 as u64, 1 << 24, |c| c.policy = PolicyKind::ClassPriority);
    let p = &t.pager;
    let specs = [(0, ObjectClass::Expert), (1, ObjectClass::OptimizerState), (2, ObjectClass::KvBlock)];
    for (id, class) in specs {
        p.register(ObjectSpec::new(id, K4, class)).unwrap();
        p.insert(ObjectId(id), &content(id, 0, K4)).unwrap();
    }
    // 1 is the most recently used, but optimizer state goes first.
    drop(p.pin(ObjectId(1), Tier::Ddr).unwrap());
    p.register(ObjectSpec::new(3, K4, ObjectClass::Expert).with_priority(5)).unwrap();
    p.insert(ObjectId(3), &content(3, 0, K4)).unwrap();
    assert_eq!(p.status(ObjectId(1)).unwrap().resident, vec![Tier::Nvme]);
    p.register(ObjectSpec::new(4, K4, ObjectClass::Expert)).unwrap();
    p.insert(ObjectId(4), &content(4, 0, K4)).unwrap();
    assert_eq!(p.status(ObjectId(2)).unwrap().resident, vec![Tier::Nvme], "then the KV block");
    assert_eq!(p.stats().policy, "class");
}

/// Evicts the highest id first.
struct HighestIdFirst;

impl Policy for HighestIdFirst {
    fn name(&self) -> &'static str {
        "highest-id"
    }
    fn rank(&self, c: &Candidate, _now: u64) -> f64 {
        -(c.id.0 as f64)
    }
}

#[test]
fn custom_policies_plug_in() {
    let (c, _dir) = common::config(3 * K4 as u64, 1 << 24);
    let p = Pager::with_policy(c, Box::new(HighestIdFirst)).unwrap();
    for id in [5, 9, 1] {
        put(&p, id, K4, 0);
    }
    put(&p, 2, K4, 0);
    assert_eq!(p.status(ObjectId(9)).unwrap().resident, vec![Tier::Nvme]);
    assert_eq!(p.stats().policy, "highest-id");
}

#[test]
fn kept_ddr_blocks_stay_within_the_capacity() {
    let cap = 4 * K4 as u64;
    let t = pager(cap, 1 << 24);
    let p = &t.pager;
    for id in 0..4 {
        put(p, id, K4, 0);
    }
    for id in 0..4 {
        p.evict(ObjectId(id), Tier::Ddr).unwrap();
    }
    let st = p.stats();
    assert_eq!((st.tier(Tier::Ddr).used, st.ddr_kept), (0, cap), "freed blocks are kept");
    // Objects of another size force the kept blocks out.
    for id in 10..12 {
        put(p, id, 2 * K4, 0);
        let st = p.stats();
        assert!(st.tier(Tier::Ddr).used + st.ddr_kept <= cap, "{st:?}");
    }
    for id in 0..4 {
        assert_eq!(p.read(ObjectId(id)).unwrap(), content(id, 0, K4));
        let st = p.stats();
        assert!(st.tier(Tier::Ddr).used + st.ddr_kept <= cap, "{st:?}");
    }
}

#[test]
fn stats_display_as_a_table() {
    let t = pager(1 << 20, 1 << 24);
    put(&t.pager, 1, K4, 0);
    t.pager.flush_all().unwrap();
    let text = t.pager.stats().to_string();
    assert!(text.contains("ddr") && text.contains("nvme") && !text.contains("hbm "), "{text}");
    assert!(text.contains("io_uring") || text.contains("pread"), "{text}");
}
