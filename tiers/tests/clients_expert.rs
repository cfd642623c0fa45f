//! The expert cache: weights through the pager against an in-memory model,
//! hit/miss/prefetch accounting, prediction from the MoE++ gating residual
//! (checked against the real router), trace recording and text form, the
//! policy simulator (hand-checked cases; Belady at or above every policy
//! and equal to a brute-force optimum), replay on a real pager, and NVMe
//! faults during fetch and prefetch.

mod common;

use std::collections::{HashMap, HashSet};

use common::{content, pager, pager_with};
use memwall_tiers::clients::expert::{
    moe_routing_trace, predict_experts, predict_experts_pregated, simulate, synthetic_trace, ExpertCache,
    ExpertCacheConfig, Pregate, ReplayOptions, RoutingTraceSpec, SimPolicy, SyntheticSpec, Trace, TraceEvent,
};
use memwall_tiers::clients::ClientError;
use memwall_tiers::memwall::moe::{route, ExpertLayout, GateInputs, MoeConfig, Residual};
use memwall_tiers::nvme::{Fault, IoOp};
use memwall_tiers::{Tier, TierError};
use proptest::prelude::*;

const EXPERT: usize = 8192;

fn moe12() -> MoeConfig {
    MoeConfig::new(ExpertLayout::paper(12).unwrap())
}

/// A cache of `layers` x 8 experts whose weights are `content(l * 8 + e)`,
/// with DDR room for `ddr_experts` experts.
fn loaded(layers: usize, ddr_experts: u64) -> (common::TestPager, ExpertCache) {
    let t = pager(ddr_experts * EXPERT as u64, 1 << 26);
    let cache = ExpertCache::new(t.pager.clone(), ExpertCacheConfig::new(layers, moe12(), EXPERT)).unwrap();
    for l in 0..layers {
        for e in 0..8 {
            cache.load(l, e, &content((l * 8 + e) as u64, 0, EXPERT)).unwrap();
        }
    }
    (t, cache)
}

#[test]
fn gets_count_hits_misses_and_prefetches() {
    let (t, cache) = loaded(2, 4);
    assert_eq!(cache.tier(), Tier::Ddr, "CPU-only: DDR is the top tier");
    // Only the last four loaded are in DDR; layer 0 spilled to NVMe.
    let pin = cache.get(0, 3).unwrap();
    assert_eq!(pin.bytes().unwrap(), &content(3, 0, EXPERT)[..]);
    drop(pin);
    drop(cache.get(0, 3).unwrap());
    let s = cache.stats();
    assert_eq!((s.accesses, s.misses, s.hits), (2, 1, 1), "{s}");
    assert!(s.miss_stall > std::time::Duration::ZERO && s.stall >= s.miss_stall);
    // A prefetch that completes before the access is a prefetched hit.
    assert!(!t.pager.status(cache.id(0, 5)).unwrap().is_in(Tier::Ddr));
    assert_eq!(cache.prefetch(0, &[5, 3]).unwrap(), 1, "3 is resident: one prefetch");
    cache.settle();
    drop(cache.get(0, 5).unwrap());
    let s = cache.stats();
    assert_eq!((s.accesses, s.hits, s.prefetch_hits, s.prefetches), (3, 2, 1, 1), "{s}");
    // A new prediction for the layer drops the unused prefetch as wasted.
    cache.prefetch(0, &[6]).unwrap();
    cache.prefetch(0, &[7]).unwrap();
    assert_eq!(cache.stats().wasted_prefetches, 1);
    cache.reset_stats();
    assert_eq!(cache.stats().accesses, 0);
    // Bad indices.
    let e = cache.get(2, 0).unwrap_err();
    assert!(matches!(e, ClientError::NoSuchExpert { layer: 2, expert: 0, layers: 2, experts: 8 }), "{e}");
    assert!(cache.get(0, 8).is_err(), "expert 8 is a zero-computation expert: no weights");
    let e = cache.load(0, 0, &[0u8; 3]).unwrap_err();
    assert!(matches!(e, ClientError::Expert { layer: 0, expert: 0, .. }), "{e}");
    assert!(matches!(e.tier_error(), Some(TierError::SizeMismatch { expected: 8192, got: 3, .. })), "{e}");
}

#[test]
fn random_gets_and_loads_match_an_in_memory_model() {
    // DDR holds 5 of 24 experts: gets, loads and prefetches move them
    // through NVMe constantly; every pin must show the model's bytes.
    proptest!(ProptestConfig { cases: 16, ..ProptestConfig::default() }, |(ops in proptest::collection::vec((0u8..4, 0usize..3, 0usize..8, 0u64..1000), 1..60))| {
        let (_t, cache) = loaded(3, 5);
        let mut model: HashMap<(usize, usize), Vec<u8>> = HashMap::new();
        for l in 0..3 {
            for e in 0..8 {
                model.insert((l, e), content((l * 8 + e) as u64, 0, EXPERT));
            }
        }
        let mut accesses = 0;
        for (op, l, e, seed) in ops {
            match op {
                0 | 1 => {
                    let pin = cache.get(l, e).unwrap();
                    prop_assert_eq!(pin.bytes().unwrap(), &model[&(l, e)][..]);
                    accesses += 1;
                }
                2 => {
                    let w = content(seed, seed, EXPERT);
                    cache.load(l, e, &w).unwrap();
                    model.insert((l, e), w);
                }
                _ => {
                    cache.prefetch(l, &[e, (e + seed as usize) % 8]).unwrap();
                }
            }
        }
        let s = cache.stats();
        prop_assert_eq!(s.accesses, accesses);
        prop_assert_eq!(s.hits + s.late_prefetches + s.misses, accesses);
    });
}

/// The FFN experts (of 8) the MoE++ router picks for `tokens` tokens with
/// its own logits `own` and the residual `W_g G`, deduplicated in first-seen
/// order (the order `predict_experts` reports).
fn routed_ffn_experts(moe: &MoeConfig, own: &[f32], g: &[f32], wg: &[f32], tokens: usize, d: usize) -> Vec<usize> {
    let x = vec![0f32; tokens * d];
    let wc = vec![0f32; 2 * 2 * d];
    let inputs = GateInputs {
        tokens: tokens as u32,
        hidden: d as u32,
        logits: own,
        residual: Some(Residual { prev_logits: g, wg }),
        x: &x,
        wc: &wc,
    };
    let routing = route(moe, &inputs).unwrap();
    let mut routed: Vec<usize> = Vec::new();
    for &e in &routing.ids {
        if (e as usize) < 8 && !routed.contains(&(e as usize)) {
            routed.push(e as usize);
        }
    }
    routed
}

#[test]
fn prediction_is_the_next_routers_choice_without_its_own_logits() {
    // The next layer routes G' = l' + W_g G. With l' = 0 its choice is
    // exactly the top-k of W_g G: what predict_experts returns (FFN only).
    let moe = moe12();
    let n = 12;
    let tokens = 6;
    let mut rng = 7u64;
    let mut next = || {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((rng >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    let g: Vec<f32> = (0..tokens * n).map(|_| next() * 3.0).collect();
    let wg: Vec<f32> = (0..n * n).map(|_| next()).collect();
    let routed = routed_ffn_experts(&moe, &vec![0f32; tokens * n], &g, &wg, tokens, 4);
    let predicted = predict_experts(&moe, &g, &wg, tokens);
    assert_eq!(predicted, routed);
    assert!(predicted.iter().all(|&e| e < 8));
    // Through the cache: the prediction is prefetched for layer 1 and
    // recorded; the last layer predicts nothing.
    let (_t, cache) = loaded(2, 24);
    cache.start_recording();
    assert_eq!(cache.prefetch_next_layer(0, &g, &wg, tokens).unwrap(), predicted);
    assert!(cache.prefetch_next_layer(1, &g, &wg, tokens).unwrap().is_empty());
    let e = cache.prefetch_next_layer(0, &g[1..], &wg, tokens).unwrap_err();
    assert!(matches!(e, ClientError::Length { expected: 72, got: 71, .. }), "{e}");
    let trace = cache.take_trace().unwrap();
    let experts: Vec<u32> = predicted.iter().map(|&e| e as u32).collect();
    assert_eq!(trace.events, vec![TraceEvent::Predict { layer: 1, experts }]);
    assert!(cache.take_trace().is_none(), "recording stopped");
}

#[test]
fn pregating_predicts_the_next_router_when_its_input_is_unchanged() {
    // The next layer routes G' = R' h' + W_g G. When h' = h (the residual
    // stream unchanged), R' h + W_g G is exactly its logits: the pre-gated
    // prediction is its choice, and the residual term alone is not.
    let moe = moe12();
    let (n, d, tokens) = (12, 16, 8);
    let mut rng = 11u64;
    let mut next = || {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((rng >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    let g: Vec<f32> = (0..tokens * n).map(|_| next()).collect();
    let wg: Vec<f32> = (0..n * n).map(|_| next() * 0.3).collect();
    let router: Vec<f32> = (0..n * d).map(|_| next()).collect();
    let h: Vec<f32> = (0..tokens * d).map(|_| next() * 2.0).collect();
    let mut own = vec![0f32; tokens * n];
    for t in 0..tokens {
        for e in 0..n {
            own[t * n + e] = (0..d).map(|i| router[e * d + i] * h[t * d + i]).sum();
        }
    }
    let routed = routed_ffn_experts(&moe, &own, &g, &wg, tokens, d);
    let pregate = Pregate { router_next: &router, hidden_states: &h, hidden: d };
    let pregated = predict_experts_pregated(&moe, &g, &wg, Some(&pregate), tokens);
    assert_eq!(pregated, routed);
    assert_ne!(predict_experts(&moe, &g, &wg, tokens), routed, "the residual term alone should miss here");
    // Through the cache, with shape checks naming the wrong slice.
    let (_t, cache) = loaded(2, 24);
    assert_eq!(cache.prefetch_next_layer_pregated(0, &g, &wg, Some(&pregate), tokens).unwrap(), pregated);
    let short = Pregate { hidden_states: &h[1..], ..pregate };
    let e = cache.prefetch_next_layer_pregated(0, &g, &wg, Some(&short), tokens).unwrap_err();
    assert!(
        matches!(e, ClientError::Length { what: "hidden_states (tokens x hidden)", expected: 128, got: 127 }),
        "{e}"
    );
    let bad = Pregate { router_next: &router[..n * d - 1], ..pregate };
    let e = cache.prefetch_next_layer_pregated(0, &g, &wg, Some(&bad), tokens).unwrap_err();
    assert!(matches!(e, ClientError::Length { what: "router_next (N x hidden)", .. }), "{e}");
}

#[test]
fn traces_round_trip_as_text_and_name_bad_lines() {
    let trace = synthetic_trace(&SyntheticSpec {
        layers: 3,
        experts: 16,
        top_k: 2,
        tokens: 4,
        steps: 5,
        skew: 1.0,
        accuracy: 0.7,
        seed: 1,
    });
    assert!(trace.access_count() > 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.txt");
    trace.save(&path).unwrap();
    assert_eq!(Trace::load(&path).unwrap(), trace);
    let text = "memwall-expert-trace v1\nlayers 2\nexperts 4\n# comment\na 0 1\np 1 2 3\na 1 9\n";
    match Trace::from_text(text).unwrap_err() {
        ClientError::Trace { line, reason } => {
            assert_eq!(line, 7);
            assert!(reason.contains("expert 9"), "{reason}");
        }
        e => panic!("{e}"),
    }
    assert!(matches!(Trace::from_text("nope").unwrap_err(), ClientError::Trace { line: 1, .. }));
    assert!(matches!(
        Trace::from_text("memwall-expert-trace v1\nlayers 2\nexperts 4\nx 1").unwrap_err(),
        ClientError::Trace { line: 4, .. }
    ));
    assert!(matches!(Trace::load(&dir.path().join("missing")).unwrap_err(), ClientError::Io { .. }));
}

fn access_trace(layers: usize, experts: usize, seq: &[(u32, u32)]) -> Trace {
    let mut t = Trace::new(layers, experts);
    t.events = seq.iter().map(|&(layer, expert)| TraceEvent::Access { layer, expert }).collect();
    t
}

#[test]
fn simulator_policies_on_hand_checked_traces() {
    // Keys a=0, b=1, c=2 of one layer, capacity 2: a b a c b a.
    let t = access_trace(1, 3, &[(0, 0), (0, 1), (0, 0), (0, 2), (0, 1), (0, 0)]);
    let lru = simulate(&t, 2, SimPolicy::Lru);
    // LRU: a b | a hit | c evicts b | b evicts a | a evicts c: 1 hit.
    assert_eq!((lru.resident, lru.misses), (1, 5));
    // LFU: c evicts b (1 use vs a's 2); b evicts c; a hit: 2 hits.
    let lfu = simulate(&t, 2, SimPolicy::Lfu);
    assert_eq!((lfu.resident, lfu.misses), (2, 4));
    // Belady: at c, b is next used before a, so a goes; b hits, a misses:
    // 2 hits, the optimum.
    let belady = simulate(&t, 2, SimPolicy::Belady);
    assert_eq!((belady.resident, belady.misses), (2, 4));
    assert!((belady.hit_rate() - 2.0 / 6.0).abs() < 1e-12);
    // Predicted with perfect predictions before each access: every access
    // is resident, but each prefetch is a transfer: the hit rate counts it.
    let mut p = Trace::new(1, 3);
    for &(l, e) in &[(0u32, 0u32), (0, 1), (0, 0), (0, 2), (0, 1), (0, 0)] {
        p.events.push(TraceEvent::Predict { layer: l, experts: vec![e] });
        p.events.push(TraceEvent::Access { layer: l, expert: e });
    }
    let pred = simulate(&p, 2, SimPolicy::Predicted);
    assert_eq!((pred.resident, pred.misses), (6, 0));
    assert_eq!(pred.useful_prefetches + pred.misses, 5, "same transfers as LRU");
    assert_eq!(pred.stall_free_rate(), 1.0);
    assert!(pred.hit_rate() <= simulate(&p, 2, SimPolicy::Belady).hit_rate());
    assert_eq!(pred.stall(std::time::Duration::from_millis(1)), std::time::Duration::ZERO);
    assert_eq!(lru.stall(std::time::Duration::from_millis(1)), std::time::Duration::from_millis(5));
    // Capacity 0: nothing is ever resident.
    assert_eq!(simulate(&t, 0, SimPolicy::Belady).misses, 6);
}

/// The fewest misses any replacement can achieve (exhaustive search).
fn brute_force_min_misses(keys: &[u32], capacity: usize) -> u64 {
    fn go(keys: &[u32], cap: usize, cache: &mut Vec<u32>, memo: &mut HashMap<(usize, Vec<u32>), u64>, i: usize) -> u64 {
        if i == keys.len() {
            return 0;
        }
        let mut sorted = cache.clone();
        sorted.sort_unstable();
        if let Some(&m) = memo.get(&(i, sorted.clone())) {
            return m;
        }
        let k = keys[i];
        let best = if cache.contains(&k) {
            go(keys, cap, cache, memo, i + 1)
        } else if cache.len() < cap {
            cache.push(k);
            let r = 1 + go(keys, cap, cache, memo, i + 1);
            cache.pop();
            r
        } else {
            let mut best = u64::MAX;
            for j in 0..cache.len() {
                let old = cache[j];
                cache[j] = k;
                best = best.min(1 + go(keys, cap, cache, memo, i + 1));
                cache[j] = old;
            }
            best
        };
        memo.insert((i, sorted), best);
        best
    }
    go(keys, capacity, &mut Vec::new(), &mut HashMap::new(), 0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn belady_is_optimal_and_a_ceiling(keys in proptest::collection::vec(0u32..6, 0..16), cap in 1usize..4,
                                       preds in proptest::collection::vec(proptest::collection::vec(0u32..6, 0..3), 16)) {
        let t = access_trace(1, 6, &keys.iter().map(|&k| (0, k)).collect::<Vec<_>>());
        let belady = simulate(&t, cap, SimPolicy::Belady);
        prop_assert_eq!(belady.misses, brute_force_min_misses(&keys, cap));
        // With arbitrary predictions interleaved.
        let mut p = Trace::new(1, 6);
        for (i, &k) in keys.iter().enumerate() {
            p.events.push(TraceEvent::Predict { layer: 0, experts: preds[i].clone() });
            p.events.push(TraceEvent::Access { layer: 0, expert: k });
        }
        for policy in SimPolicy::ALL {
            let r = simulate(&p, cap, policy);
            prop_assert!(belady.hit_rate() >= r.hit_rate(), "{:?}: {:?} vs {:?}", policy, r, belady);
            prop_assert_eq!(r.accesses, keys.len() as u64);
            prop_assert_eq!(r.resident + r.misses, r.accesses);
            prop_assert!(r.useful_prefetches + r.wasted_prefetches == r.prefetch_loads);
        }
    }
}

#[test]
fn belady_bounds_every_policy_on_skewed_and_routing_traces() {
    let mut traces = Vec::new();
    for (skew, accuracy, seed) in [(0.0, 0.5, 1), (0.8, 0.9, 2), (1.2, 1.0, 3), (2.0, 0.3, 4)] {
        traces.push(synthetic_trace(&SyntheticSpec {
            layers: 4,
            experts: 16,
            top_k: 2,
            tokens: 3,
            steps: 30,
            skew,
            accuracy,
            seed,
        }));
    }
    let routed = moe_routing_trace(&RoutingTraceSpec {
        layers: 4,
        moe: MoeConfig::new(ExpertLayout::paper(20).unwrap()),
        tokens: 4,
        steps: 20,
        bias: 1.0,
        noise: 0.3,
        residual: 0.5,
        seed: 5,
    })
    .unwrap();
    assert!(
        routed.prediction_accuracy() > 0.3,
        "the residual makes routing predictable: {}",
        routed.prediction_accuracy()
    );
    traces.push(routed);
    for (i, trace) in traces.iter().enumerate() {
        for cap in [4, 12, 24, 40] {
            let belady = simulate(trace, cap, SimPolicy::Belady);
            for policy in [SimPolicy::Lru, SimPolicy::Lfu, SimPolicy::Predicted] {
                let r = simulate(trace, cap, policy);
                assert!(belady.hit_rate() >= r.hit_rate(), "trace {i} cap {cap} {policy:?}: {r:?} vs {belady:?}");
            }
        }
        // Skew raises hit rates; accurate predictions make LRU+prefetch
        // stall less than LRU.
        let lru = simulate(trace, 12, SimPolicy::Lru);
        let pred = simulate(trace, 12, SimPolicy::Predicted);
        if trace.prediction_accuracy() > 0.85 {
            assert!(pred.stall_free_rate() > lru.stall_free_rate(), "trace {i}: {pred:?} vs {lru:?}");
        }
    }
    let flat = simulate(&traces[0], 12, SimPolicy::Lru).hit_rate();
    let skewed = simulate(&traces[3], 12, SimPolicy::Lru).hit_rate();
    assert!(skewed > flat, "skew {skewed} vs uniform {flat}");
}

#[test]
fn replay_with_predictions_misses_less_than_demand_fetch() {
    let trace = synthetic_trace(&SyntheticSpec {
        layers: 3,
        experts: 8,
        top_k: 2,
        tokens: 2,
        steps: 12,
        skew: 0.5,
        accuracy: 1.0,
        seed: 9,
    });
    let (_t, cache) = loaded(3, 8);
    let opts = ReplayOptions { prefetch: false, compute_per_access: std::time::Duration::from_micros(200) };
    let demand = cache.replay(&trace, opts).unwrap();
    let predicted = cache.replay(&trace, ReplayOptions { prefetch: true, ..opts }).unwrap();
    assert_eq!(demand.accesses, trace.access_count() as u64);
    assert_eq!(predicted.accesses, demand.accesses);
    assert!(predicted.prefetches > 0);
    assert!(predicted.misses < demand.misses, "prefetch {predicted}\ndemand {demand}");
    // Recording a replay gives the trace back (accesses, and predictions
    // when prefetching).
    cache.start_recording();
    cache.replay(&trace, ReplayOptions { prefetch: true, compute_per_access: std::time::Duration::ZERO }).unwrap();
    assert_eq!(cache.take_trace().unwrap(), trace);
}

#[test]
fn nvme_faults_during_fetch_and_prefetch_lose_no_expert() {
    for (path, io) in common::io_paths() {
        let t = pager_with(4 * EXPERT as u64, 1 << 26, |c| c.nvme.io = io);
        let cache = ExpertCache::new(t.pager.clone(), ExpertCacheConfig::new(2, moe12(), EXPERT)).unwrap();
        for l in 0..2 {
            for e in 0..8 {
                cache.load(l, e, &content((l * 8 + e) as u64, 0, EXPERT)).unwrap();
            }
        }
        // (0, 1) is on NVMe only; its fetch fails with EIO.
        assert_eq!(t.pager.status(cache.id(0, 1)).unwrap().resident, vec![Tier::Nvme]);
        t.faults.inject(IoOp::Read, Fault::Eio, 1);
        let e = cache.get(0, 1).unwrap_err();
        assert!(matches!(e, ClientError::Expert { layer: 0, expert: 1, .. }), "{path}: {e}");
        assert_eq!(e.os_error(), Some(libc::EIO), "{path}: {e}");
        assert!(e.to_string().contains("expert (layer 0, expert 1)"), "{e}");
        assert_eq!(t.pager.status(cache.id(0, 1)).unwrap().resident, vec![Tier::Nvme], "still on NVMe");
        assert_eq!(cache.get(0, 1).unwrap().bytes().unwrap(), &content(1, 0, EXPERT)[..], "{path}: retry");
        // A corrupt prefetch: counted, and the access fetches on demand.
        t.faults.inject(IoOp::Read, Fault::Corrupt, 1);
        cache.prefetch(0, &[2]).unwrap();
        cache.settle();
        let pin = cache.get(0, 2).unwrap();
        assert_eq!(pin.bytes().unwrap(), &content(2, 0, EXPERT)[..], "{path}");
        let s = cache.stats();
        assert_eq!((s.prefetch_errors, s.misses), (1, 2), "{path}: {s}");
        // Every expert is intact.
        drop(pin);
        let mut seen = HashSet::new();
        for l in 0..2 {
            for e in 0..8 {
                assert_eq!(cache.get(l, e).unwrap().bytes().unwrap(), &content((l * 8 + e) as u64, 0, EXPERT)[..]);
                seen.insert((l, e));
            }
        }
        assert_eq!(seen.len(), 16);
    }
}
