//! The paged KV cache against a plain model (per sequence, a list of
//! tokens' keys and values) over random operation sequences — append,
//! write, fork, free, swap out to DDR or NVMe, swap in — checking every
//! token, the pool's accounting, and decode attention over the cache's
//! block tables against decode over the model's contiguous cache. Then
//! copy-on-write, grouping of swaps, errors, and NVMe faults during swaps.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use half::bf16;
use memwall_tiers::clients::kv::{KvCache, KvConfig, KvShape, SeqId};
use memwall_tiers::clients::ClientError;
use memwall_tiers::memwall::attention::decode;
use memwall_tiers::memwall::dtype::Dtype;
use memwall_tiers::nvme::{Fault, IoOp};
use memwall_tiers::{Pager, Tier};
use proptest::prelude::*;

const SHAPE: KvShape =
    KvShape { layers: 2, kv_heads: 2, head_dim: 64, page_size: 3, num_pages: 24, dtype: Dtype::BF16 };
const HEADS: u32 = 4;
/// Elements of one token's K (or V), every layer.
const TOKEN: usize = 2 * 2 * 64;

fn cache_on(pager: &Pager, group: usize) -> KvCache {
    let mut cfg = KvConfig::new(SHAPE);
    cfg.swap_group_blocks = group;
    KvCache::new(pager.clone(), cfg).unwrap()
}

/// One token's K and V for every layer, from `seed`.
fn token(seed: u64) -> (Vec<bf16>, Vec<bf16>) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bf16::from_f32(((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0)
    };
    let k = (0..TOKEN).map(|_| next()).collect();
    let v = (0..TOKEN).map(|_| next()).collect();
    (k, v)
}

/// One token's keys and values, every layer.
type Token = (Vec<bf16>, Vec<bf16>);

/// The plain model: each sequence's tokens, and whether it is swapped out.
#[derive(Default)]
struct Model {
    seqs: BTreeMap<SeqId, (Vec<Token>, bool)>,
}

impl Model {
    /// Every token of every sequence in the pool equals the model's; the
    /// pool's free and shared counts follow from the block tables.
    fn check(&self, kv: &KvCache) {
        assert_eq!(kv.sequences(), self.seqs.keys().copied().collect::<Vec<_>>());
        let mut refs: HashMap<i32, usize> = HashMap::new();
        let per_layer = TOKEN / 2;
        for (&s, (tokens, swapped)) in &self.seqs {
            assert_eq!(kv.len(s).unwrap(), tokens.len(), "seq {s}");
            assert_eq!(kv.swapped(s).unwrap().is_some(), *swapped, "seq {s}");
            if *swapped {
                assert!(matches!(kv.block_table(s), Err(ClientError::SwappedOut { .. })));
                continue;
            }
            let table = kv.block_table(s).unwrap();
            assert_eq!(table.len(), tokens.len().div_ceil(SHAPE.page_size), "seq {s}");
            let distinct: HashSet<i32> = table.iter().copied().collect();
            assert_eq!(distinct.len(), table.len(), "seq {s}: a page twice in one table");
            for &p in table {
                *refs.entry(p).or_default() += 1;
            }
            for (pos, (k, v)) in tokens.iter().enumerate() {
                for layer in 0..SHAPE.layers {
                    let (gk, gv) = kv.read::<bf16>(s, layer, pos).unwrap();
                    assert_eq!(gk, k[layer * per_layer..(layer + 1) * per_layer], "seq {s} pos {pos} layer {layer} K");
                    assert_eq!(gv, v[layer * per_layer..(layer + 1) * per_layer], "seq {s} pos {pos} layer {layer} V");
                }
            }
        }
        let stats = kv.pool_stats();
        assert_eq!(stats.free, SHAPE.num_pages - refs.len(), "free pages");
        assert_eq!(stats.shared, refs.values().filter(|&&r| r > 1).count(), "shared pages");
    }

    /// Decode over the cache's block tables equals decode over the
    /// model's contiguous cache, for every layer.
    fn check_decode(&self, kv: &KvCache, seed: u64) {
        let seqs: Vec<SeqId> =
            self.seqs.iter().filter(|(_, (t, swapped))| !swapped && !t.is_empty()).map(|(&s, _)| s).collect();
        if seqs.is_empty() {
            return;
        }
        let batch = kv.batch(&seqs).unwrap();
        let scale = 0.125;
        let shape = batch.decode_shape(&SHAPE, HEADS, scale);
        let q: Vec<bf16> = (0..shape.q_len()).map(|i| token(seed + i as u64 / TOKEN as u64).0[i % TOKEN]).collect();
        // The model's contiguous cache: sequence after sequence, whole pages.
        let pages: Vec<usize> = seqs.iter().map(|s| self.seqs[s].0.len().div_ceil(SHAPE.page_size)).collect();
        let total: usize = pages.iter().sum();
        let max_pages = *pages.iter().max().unwrap();
        let mut tables = vec![0i32; seqs.len() * max_pages];
        let mut first = 0;
        for (b, &n) in pages.iter().enumerate() {
            for i in 0..n {
                tables[b * max_pages + i] = (first + i) as i32;
            }
            first += n;
        }
        let lens: Vec<i32> = seqs.iter().map(|s| self.seqs[s].0.len() as i32).collect();
        let mut flat = shape;
        flat.num_pages = total as u32;
        flat.max_pages = max_pages as u32;
        flat.block_tables = &tables;
        flat.seq_lens = &lens;
        let per_layer = TOKEN / 2;
        for layer in 0..SHAPE.layers {
            let mut kc = vec![bf16::ZERO; flat.cache_len()];
            let mut vc = vec![bf16::ZERO; flat.cache_len()];
            for (b, s) in seqs.iter().enumerate() {
                for (j, (k, v)) in self.seqs[s].0.iter().enumerate() {
                    let o = flat.cache_offset(b, j, 0);
                    kc[o..o + per_layer].copy_from_slice(&k[layer * per_layer..(layer + 1) * per_layer]);
                    vc[o..o + per_layer].copy_from_slice(&v[layer * per_layer..(layer + 1) * per_layer]);
                }
            }
            let (mut want, mut want_lse) = (vec![bf16::ZERO; flat.q_len()], vec![0f32; seqs.len() * HEADS as usize]);
            decode(&flat, &q, &kc, &vc, &mut want, &mut want_lse).unwrap();
            let (mut got, mut got_lse) = (vec![bf16::ZERO; shape.q_len()], vec![0f32; seqs.len() * HEADS as usize]);
            decode(&shape, &q, kv.k_cache(layer).unwrap(), kv.v_cache(layer).unwrap(), &mut got, &mut got_lse).unwrap();
            assert_eq!(got, want, "layer {layer}");
            assert_eq!(got_lse, want_lse, "layer {layer}");
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add,
    Append(usize, u64),
    Write(usize, usize, usize, u64),
    Fork(usize),
    Free(usize),
    SwapOut(usize, bool),
    SwapIn(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Add),
        8 => (any::<usize>(), any::<u64>()).prop_map(|(s, x)| Op::Append(s, x)),
        2 => (any::<usize>(), 0usize..2, any::<usize>(), any::<u64>()).prop_map(|(s, l, p, x)| Op::Write(s, l, p, x)),
        2 => any::<usize>().prop_map(Op::Fork),
        1 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(s, n)| Op::SwapOut(s, n)),
        2 => any::<usize>().prop_map(Op::SwapIn),
    ]
}

/// Applies `op` to the cache and the model; checks refusals.
fn apply(kv: &mut KvCache, model: &mut Model, op: &Op) {
    let ids: Vec<SeqId> = model.seqs.keys().copied().collect();
    let pick = |i: usize| ids.get(i % ids.len().max(1)).copied();
    match *op {
        Op::Add => {
            let s = kv.add_sequence();
            model.seqs.insert(s, (Vec::new(), false));
        }
        Op::Append(i, seed) => {
            let Some(s) = pick(i) else { return };
            let (k, v) = token(seed);
            let (tokens, swapped) = model.seqs.get_mut(&s).unwrap();
            match kv.append(s, &k, &v) {
                Ok(pos) => {
                    assert!(!*swapped);
                    assert_eq!(pos, tokens.len());
                    tokens.push((k, v));
                }
                Err(ClientError::SwappedOut { .. }) => assert!(*swapped),
                Err(ClientError::PoolFull { needed: 1, free: 0, .. }) => {}
                Err(e) => panic!("append: {e}"),
            }
        }
        Op::Write(i, layer, p, seed) => {
            let Some(s) = pick(i) else { return };
            let (tokens, swapped) = model.seqs.get_mut(&s).unwrap();
            if *swapped || tokens.is_empty() {
                return;
            }
            let pos = p % tokens.len();
            let (k, v) = token(seed);
            let n = TOKEN / 2;
            match kv.write(s, layer, pos, &k[..n], &v[..n]) {
                Ok(()) => {
                    tokens[pos].0[layer * n..(layer + 1) * n].copy_from_slice(&k[..n]);
                    tokens[pos].1[layer * n..(layer + 1) * n].copy_from_slice(&v[..n]);
                }
                Err(ClientError::PoolFull { free: 0, .. }) => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        Op::Fork(i) => {
            let Some(s) = pick(i) else { return };
            match kv.fork(s) {
                Ok(t) => {
                    let tokens = model.seqs[&s].0.clone();
                    model.seqs.insert(t, (tokens, false));
                }
                Err(ClientError::SwappedOut { .. }) => assert!(model.seqs[&s].1),
                Err(e) => panic!("fork: {e}"),
            }
        }
        Op::Free(i) => {
            let Some(s) = pick(i) else { return };
            kv.free(s).unwrap();
            model.seqs.remove(&s);
            assert!(matches!(kv.len(s), Err(ClientError::UnknownSequence { .. })));
        }
        Op::SwapOut(i, nvme) => {
            let Some(s) = pick(i) else { return };
            let to = if nvme { Tier::Nvme } else { Tier::Ddr };
            let free = kv.pool_stats().free;
            match kv.swap_out(s, to) {
                Ok(r) => {
                    let entry = model.seqs.get_mut(&s).unwrap();
                    assert!(!entry.1);
                    entry.1 = true;
                    assert_eq!(r.blocks, entry.0.len().div_ceil(SHAPE.page_size));
                    assert!(kv.pool_stats().free >= free);
                }
                Err(ClientError::SwappedOut { .. }) => assert!(model.seqs[&s].1),
                Err(e) => panic!("swap out: {e}"),
            }
        }
        Op::SwapIn(i) => {
            let Some(s) = pick(i) else { return };
            match kv.swap_in(s) {
                Ok(_) => {
                    let entry = model.seqs.get_mut(&s).unwrap();
                    assert!(entry.1);
                    entry.1 = false;
                }
                Err(ClientError::NotSwappedOut { .. }) => assert!(!model.seqs[&s].1),
                Err(ClientError::PoolFull { needed, free, .. }) => assert!(needed > free),
                Err(e) => panic!("swap in: {e}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_plain_model(ops in proptest::collection::vec(op(), 1..80), group in 1usize..4) {
        // DDR holds the pool and a little more: swaps to DDR spill to NVMe.
        let t = common::pager(SHAPE.pool_bytes() as u64 + 40_960, 1 << 26);
        let mut kv = cache_on(&t.pager, group);
        let mut model = Model::default();
        for s in 0..2 {
            apply(&mut kv, &mut model, &Op::Add);
            for x in 0..4 {
                apply(&mut kv, &mut model, &Op::Append(s, x));
            }
        }
        for (n, op) in ops.iter().enumerate() {
            apply(&mut kv, &mut model, op);
            model.check(&kv);
            if n % 10 == 9 {
                model.check_decode(&kv, n as u64);
            }
        }
        model.check_decode(&kv, 99);
        // Freeing everything returns every page and removes every swap object.
        for s in kv.sequences() {
            kv.free(s).unwrap();
        }
        prop_assert_eq!(kv.pool_stats().free, SHAPE.num_pages);
        prop_assert_eq!(t.pager.stats().objects, 1, "only the pool object is left");
    }
}

#[test]
fn forks_share_blocks_and_copy_on_write() {
    let t = common::pager(1 << 20, 1 << 24);
    let mut kv = cache_on(&t.pager, 16);
    let a = kv.add_sequence();
    for x in 0..5 {
        let (k, v) = token(x);
        kv.append(a, &k, &v).unwrap();
    }
    let b = kv.fork(a).unwrap();
    assert_eq!(kv.block_table(a).unwrap(), kv.block_table(b).unwrap());
    assert_eq!(kv.pool_stats().shared, 2);
    assert_eq!(kv.pool_stats().free, SHAPE.num_pages - 2);
    // B appends into the shared, partly filled last block: it is copied.
    let (k, v) = token(100);
    assert_eq!(kv.append(b, &k, &v).unwrap(), 5);
    assert_eq!(kv.stats().cow_copies, 1);
    let (ta, tb) = (kv.block_table(a).unwrap().to_vec(), kv.block_table(b).unwrap().to_vec());
    assert_eq!(ta[0], tb[0], "the full first block stays shared");
    assert_ne!(ta[1], tb[1]);
    assert_eq!(kv.read::<bf16>(b, 1, 4).unwrap(), kv.read::<bf16>(a, 1, 4).unwrap(), "copied rows");
    assert_eq!(kv.read::<bf16>(b, 0, 5).unwrap().0, k[..TOKEN / 2]);
    assert!(matches!(kv.read::<bf16>(a, 0, 5), Err(ClientError::Position { pos: 5, len: 5, .. })));
    // A's last block is private again: no copy.
    kv.append(a, &token(101).0, &token(101).1).unwrap();
    assert_eq!(kv.stats().cow_copies, 1);
    // A write into the shared first block copies it.
    kv.write(a, 1, 0, &k[..TOKEN / 2], &v[..TOKEN / 2]).unwrap();
    assert_eq!(kv.stats().cow_copies, 2);
    assert_ne!(kv.block_table(a).unwrap()[0], kv.block_table(b).unwrap()[0]);
    assert_eq!(kv.read::<bf16>(b, 1, 0).unwrap(), (token(0).0[TOKEN / 2..].to_vec(), token(0).1[TOKEN / 2..].to_vec()));
    assert_eq!(kv.pool_stats().shared, 0);
}

#[test]
fn swaps_move_whole_groups_and_keep_shared_pages() {
    let t = common::pager(1 << 20, 1 << 24);
    let mut kv = cache_on(&t.pager, 4);
    let a = kv.add_sequence();
    for x in 0..30 {
        kv.append(a, &token(x).0, &token(x).1).unwrap();
    }
    let b = kv.fork(a).unwrap();
    let objects = t.pager.stats().objects;
    let free = kv.pool_stats().free;
    let r = kv.swap_out(a, Tier::Nvme).unwrap();
    assert_eq!((r.blocks, r.groups, r.bytes), (10, 3, 10 * SHAPE.block_bytes() as u64));
    assert_eq!(t.pager.stats().objects, objects + 3, "one object per group of 4 blocks");
    assert_eq!(kv.pool_stats().free, free, "b still uses every page");
    assert_eq!(kv.swapped(a).unwrap(), Some(Tier::Nvme));
    assert!(matches!(kv.append(a, &token(0).0, &token(0).1), Err(ClientError::SwappedOut { tier: Tier::Nvme, .. })));
    assert!(matches!(kv.fork(a), Err(ClientError::SwappedOut { .. })));
    assert!(matches!(kv.swap_out(a, Tier::Ddr), Err(ClientError::SwappedOut { .. })));
    assert!(matches!(kv.swap_in(b), Err(ClientError::NotSwappedOut { .. })));
    let r = kv.swap_in(a).unwrap();
    assert_eq!((r.blocks, r.groups), (10, 3));
    assert_eq!(t.pager.stats().objects, objects, "the group objects are dropped");
    assert_eq!(kv.pool_stats().free, free - 10, "a has private pages now");
    for pos in 0..30 {
        assert_eq!(kv.read::<bf16>(a, 0, pos).unwrap(), kv.read::<bf16>(b, 0, pos).unwrap());
        assert_eq!(kv.read::<bf16>(a, 1, pos).unwrap().1, token(pos as u64).1[TOKEN / 2..]);
    }
    let s = kv.stats();
    assert_eq!((s.swaps_out, s.swaps_in, s.group_objects), (1, 1, 3));
    assert!(s.gbps_out() > 0.0 && s.gbps_in() > 0.0);
    // The pool is full: swap-in and append refuse, changing nothing.
    kv.swap_out(a, Tier::Ddr).unwrap();
    let c = kv.add_sequence();
    let mut n = 0;
    while kv.append(c, &token(n).0, &token(n).1).is_ok() {
        n += 1;
    }
    assert_eq!(n as usize, (SHAPE.num_pages - 10) * SHAPE.page_size);
    let e = kv.swap_in(a).unwrap_err();
    assert!(matches!(e, ClientError::PoolFull { needed: 10, free: 0, pages: 24, .. }), "{e}");
    assert_eq!(kv.swapped(a).unwrap(), Some(Tier::Ddr));
    kv.free(c).unwrap();
    kv.swap_in(a).unwrap();
    assert_eq!(kv.read::<bf16>(a, 0, 29).unwrap().0, token(29).0[..TOKEN / 2]);
}

#[test]
fn bad_input_is_refused() {
    let t = common::pager(1 << 20, 1 << 24);
    let mut kv = cache_on(&t.pager, 16);
    let a = kv.add_sequence();
    let e = kv.append(a, &token(0).0[1..], &token(0).1).unwrap_err();
    assert!(matches!(e, ClientError::Length { got: 255, expected: 256, .. }), "{e}");
    let halves = vec![half::f16::ZERO; TOKEN];
    assert!(matches!(kv.append(a, &halves, &halves), Err(ClientError::Invalid { what: "element type", .. })));
    assert!(matches!(kv.len(SeqId(77)), Err(ClientError::UnknownSequence { seq: 77 })));
    assert!(matches!(kv.free(SeqId(77)), Err(ClientError::UnknownSequence { seq: 77 })));
    assert!(kv.swap_out(a, Tier::Hbm).is_err());
    assert!(kv.k_cache::<bf16>(2).is_err());
    let mut bad = KvConfig::new(SHAPE);
    bad.shape.dtype = Dtype::F32;
    bad.id_base += 1000;
    assert!(matches!(KvCache::new(t.pager.clone(), bad).unwrap_err(), ClientError::Invalid { what: "dtype", .. }));
    // The pool must fit its tier.
    let small = common::pager(64 << 10, 1 << 24);
    let e = KvCache::new(small.pager.clone(), KvConfig::new(SHAPE)).unwrap_err();
    assert!(e.tier_error().is_some(), "{e}");
    assert_eq!(small.pager.stats().objects, 0, "a failed cache leaves no object behind");
    // Empty sequences swap as nothing.
    let r = kv.swap_out(a, Tier::Nvme).unwrap();
    assert_eq!((r.blocks, r.groups), (0, 0));
    kv.swap_in(a).unwrap();
    assert_eq!(kv.len(a).unwrap(), 0);
}

#[test]
fn nvme_faults_during_swaps_lose_no_sequence() {
    for (path, io) in common::io_paths() {
        let t = common::pager_with(1 << 20, 1 << 24, |c| c.nvme.io = io);
        let mut kv = cache_on(&t.pager, 2);
        let a = kv.add_sequence();
        for x in 0..14 {
            kv.append(a, &token(x).0, &token(x).1).unwrap();
        }
        let objects = t.pager.stats().objects;
        let pool = kv.pool_stats();
        let table = kv.block_table(a).unwrap().to_vec();
        for fault in [Fault::NoSpace, Fault::Eio, Fault::Short] {
            t.faults.inject_after(IoOp::Write, fault, 1, 1);
            let e = kv.swap_out(a, Tier::Nvme).unwrap_err();
            assert!(
                matches!(e, ClientError::Swap { seq: 0, direction: "out", tier: Tier::Nvme, .. }),
                "{path} {fault:?}: {e}"
            );
            assert!(!t.faults.is_armed(), "{path} {fault:?}: the fault hit");
            assert_eq!(kv.swapped(a).unwrap(), None, "{path}: still in the pool");
            assert_eq!(kv.block_table(a).unwrap(), &table[..]);
            assert_eq!(kv.pool_stats(), pool);
            assert_eq!(t.pager.stats().objects, objects, "{path} {fault:?}: no group object left behind");
        }
        // With the faults gone the swap-out succeeds; a read fault during
        // the swap-in leaves the sequence swapped out, its groups intact.
        kv.swap_out(a, Tier::Nvme).unwrap();
        let swapped_objects = t.pager.stats().objects;
        assert_eq!(swapped_objects, objects + 3, "14 tokens = 5 blocks, in groups of 2");
        for fault in [Fault::Eio, Fault::Corrupt, Fault::Short] {
            // Groups read before a failure stay cached in DDR; one stays on NVMe.
            t.faults.inject(IoOp::Read, fault, 1);
            let e = kv.swap_in(a).unwrap_err();
            assert!(
                matches!(e, ClientError::Swap { seq: 0, direction: "in", tier: Tier::Nvme, .. }),
                "{path} {fault:?}: {e}"
            );
            assert!(!t.faults.is_armed(), "{path} {fault:?}: the fault hit");
            assert_eq!(kv.swapped(a).unwrap(), Some(Tier::Nvme));
            assert_eq!(kv.pool_stats().free, SHAPE.num_pages, "{path} {fault:?}: the pages were returned");
            assert_eq!(t.pager.stats().objects, swapped_objects);
        }
        kv.swap_in(a).unwrap();
        for x in 0..14 {
            let (k, v) = token(x);
            for layer in 0..2 {
                let n = TOKEN / 2;
                let got = kv.read::<bf16>(a, layer, x as usize).unwrap();
                assert_eq!(got, (k[layer * n..(layer + 1) * n].to_vec(), v[layer * n..(layer + 1) * n].to_vec()));
            }
        }
        assert_eq!(t.pager.stats().objects, objects);
    }
}
