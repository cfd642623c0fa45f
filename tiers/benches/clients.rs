//! `cargo bench -p memwall-tiers --bench clients`: the tier clients on this
//! machine (DDR + NVMe; the top tier is DDR without a GPU).
//!
//! 1. Expert cache: hit rate and stall per policy on routing traces
//!    (synthetic skewed ones, one from the MoE++ router, and
//!    `MEMWALL_EXPERT_TRACE` when set), simulated (LRU, LFU, predicted,
//!    Belady) and replayed on the pager (LRU, frequency, predicted).
//! 2. Optimizer offload: AdamW step time per parameter count beside the
//!    NVMe bound (state read + state written at the pager's raw GB/s).
//! 3. KV swap: swap-out and swap-in GB/s of one sequence per group size,
//!    beside the pager's raw write and read GB/s for an object that size.
//!
//! Without `--bench` (as under `cargo test --all-targets`) it runs tiny
//! sizes in well under a second. `MEMWALL_BENCH_DIR` moves the data files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use half::bf16;
use memwall_tiers::clients::expert::{
    moe_routing_trace, simulate, synthetic_trace, ExpertCache, ExpertCacheConfig, ReplayOptions, RoutingTraceSpec,
    SimPolicy, SyntheticSpec, Trace,
};
use memwall_tiers::clients::kv::{KvCache, KvConfig, KvShape};
use memwall_tiers::clients::optimizer::{OffloadSettings, OptimizerOffload};
use memwall_tiers::config::{Capacity, PolicyKind, Toggle};
use memwall_tiers::memwall::dtype::Dtype;
use memwall_tiers::memwall::moe::{ExpertLayout, MoeConfig};
use memwall_tiers::{Config, ObjectClass, ObjectId, ObjectSpec, Pager, Tier};

const MIB: usize = 1 << 20;

struct Plan {
    /// Layers, tokens and steps of the expert traces; expert size; cache
    /// capacity in experts; compute per access.
    expert: (usize, usize, usize, usize, usize, Duration),
    /// Parameter counts, partition size, steps per count.
    optimizer: (Vec<usize>, usize, usize),
    /// KV shapes, blocks per sequence, group sizes.
    kv: Vec<(KvShape, usize, Vec<usize>)>,
    /// Bytes the pager's raw NVMe GB/s is measured with.
    raw: usize,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full {
        // 2 MiB blocks (every layer of 16 tokens), and 64 KiB blocks.
        let big = KvShape { layers: 32, kv_heads: 8, head_dim: 128, page_size: 16, num_pages: 72, dtype: Dtype::BF16 };
        let small =
            KvShape { layers: 2, kv_heads: 4, head_dim: 64, page_size: 32, num_pages: 2100, dtype: Dtype::BF16 };
        Plan {
            expert: (8, 8, 16, 2 * MIB, 32, Duration::from_millis(2)),
            optimizer: (vec![4 << 20, 16 << 20, 64 << 20], 1 << 20, 3),
            kv: vec![(big, 64, vec![1, 4, 16, 64]), (small, 2048, vec![1, 16, 256, 2048])],
            raw: 128 * MIB,
        }
    } else {
        let shape = KvShape { layers: 2, kv_heads: 2, head_dim: 64, page_size: 4, num_pages: 12, dtype: Dtype::BF16 };
        Plan {
            expert: (3, 2, 3, 16 << 10, 8, Duration::ZERO),
            optimizer: (vec![20_000], 4096, 2),
            kv: vec![(shape, 8, vec![1, 8])],
            raw: MIB,
        }
    };
    let dir = std::env::var_os("MEMWALL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("memwall-clients-bench"));
    std::fs::create_dir_all(&dir).expect("bench folder");
    println!("memwall-tiers clients bench ({}), data files in {}", if full { "full" } else { "smoke" }, dir.display());
    let (_, expert_read) = single_gbps(&dir, plan.expert.3);
    expert_table(&plan, &dir, expert_read);
    optimizer_table(&plan, &dir);
    for kv in &plan.kv {
        kv_table(kv, &dir, plan.raw);
    }
}

fn config(dir: &Path, ddr: usize, policy: PolicyKind) -> Config {
    let mut c = Config::default();
    c.hbm.enabled = Toggle::Off;
    c.ddr.capacity = Capacity::Bytes(ddr as u64);
    c.nvme.dir = dir.to_path_buf();
    c.nvme.capacity = Capacity::Bytes(64 << 30);
    c.policy = policy;
    c
}

fn gbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

/// The pager's NVMe write and read GB/s for one object of `bytes` at a
/// time (flush, then fetch): what one expert miss costs.
fn single_gbps(dir: &Path, bytes: usize) -> (f64, f64) {
    let p = Pager::new(config(dir, 2 * bytes + MIB, PolicyKind::Lru)).expect("pager");
    let reps = (256 * MIB / bytes).clamp(1, 64);
    let data: Vec<u8> = (0..bytes).map(|i| (i * 31 + i / 4096) as u8).collect();
    let (mut tw, mut tr) = (Duration::ZERO, Duration::ZERO);
    for id in 0..reps as u64 {
        p.register(ObjectSpec::new(id, bytes, ObjectClass::Other)).expect("register");
        p.insert(ObjectId(id), &data).expect("insert");
        let t = Instant::now();
        p.flush(ObjectId(id)).expect("flush");
        tw += t.elapsed();
        p.evict(ObjectId(id), Tier::Ddr).expect("evict");
        let t = Instant::now();
        p.fetch(ObjectId(id), Tier::Ddr).expect("fetch");
        tr += t.elapsed();
        p.remove(ObjectId(id)).expect("remove");
    }
    let total = (reps * bytes) as u64;
    (gbps(total, tw), gbps(total, tr))
}

/// The pager's raw NVMe write and read GB/s: `bytes` as 4 objects moved
/// at once on the prefetch workers (writes to NVMe, then reads back), the
/// best of 5 runs.
fn raw_gbps(dir: &Path, bytes: usize) -> (f64, f64) {
    let p = Pager::new(config(dir, 2 * bytes + 4 * MIB, PolicyKind::Lru)).expect("pager");
    let part = bytes / 4;
    let data: Vec<u8> = (0..part).map(|i| (i * 31 + i / 4096) as u8).collect();
    let ids: Vec<ObjectId> = (0..4u64).map(ObjectId).collect();
    for &id in &ids {
        p.register(ObjectSpec::new(id.0, part, ObjectClass::Other)).expect("register");
    }
    let (mut write, mut read) = (0f64, 0f64);
    for _ in 0..5 {
        for &id in &ids {
            p.insert(id, &data).expect("insert");
        }
        let t = Instant::now();
        let tickets: Vec<_> = ids.iter().map(|&id| p.prefetch(id, Tier::Nvme)).collect();
        tickets.into_iter().for_each(|t| t.wait().expect("write"));
        p.sync().expect("sync");
        write = write.max(gbps((4 * part) as u64, t.elapsed()));
        for &id in &ids {
            p.evict(id, Tier::Ddr).expect("evict");
        }
        let t = Instant::now();
        let tickets: Vec<_> = ids.iter().map(|&id| p.prefetch(id, Tier::Ddr)).collect();
        tickets.into_iter().for_each(|t| t.wait().expect("read"));
        read = read.max(gbps((4 * part) as u64, t.elapsed()));
    }
    (write, read)
}

fn traces(plan: &Plan) -> Vec<(String, Trace)> {
    let (layers, tokens, steps, ..) = plan.expert;
    let moe = MoeConfig::new(ExpertLayout::paper(20).expect("layout"));
    let mut out = Vec::new();
    for (skew, accuracy) in [(0.8, 0.85), (1.5, 0.95)] {
        let spec = SyntheticSpec { layers, experts: 16, top_k: 2, tokens, steps, skew, accuracy, seed: 42 };
        out.push((format!("zipf {skew}, pred {accuracy}"), synthetic_trace(&spec)));
    }
    let spec = RoutingTraceSpec { layers, moe, tokens, steps, bias: 1.0, noise: 0.5, residual: 0.5, seed: 7 };
    out.push(("MoE++ router".into(), moe_routing_trace(&spec).expect("routing trace")));
    if let Some(path) = std::env::var_os("MEMWALL_EXPERT_TRACE") {
        match Trace::load(Path::new(&path)) {
            Ok(t) => out.push((format!("recorded {}", Path::new(&path).display()), t)),
            Err(e) => println!("MEMWALL_EXPERT_TRACE: {e}"),
        }
    }
    out
}

fn expert_table(plan: &Plan, dir: &Path, read_gbps: f64) {
    let (_, _, _, bytes, capacity, compute) = plan.expert;
    let fetch = Duration::from_secs_f64(bytes as f64 / (read_gbps * 1e9));
    println!();
    println!(
        "Expert cache: {capacity} experts of {} KiB in DDR, NVMe below; one fetch {:.2} ms ({read_gbps:.2} GB/s); \
         compute {} us per access",
        bytes >> 10,
        fetch.as_secs_f64() * 1e3,
        compute.as_micros()
    );
    println!("hit rate: accesses needing no transfer of their own (Belady is the ceiling); stall-free: found resident");
    println!(
        "| {:<22} | {:<9} | {:<9} | {:>8} | {:>10} | {:>7} | {:>11} | {:>12} |",
        "trace", "policy", "run", "hit rate", "stall-free", "fetches", "stall (ms)", "hit / Belady"
    );
    println!("|------------------------|-----------|-----------|----------|------------|---------|-------------|--------------|");
    for (name, trace) in traces(plan) {
        let belady = simulate(&trace, capacity, SimPolicy::Belady);
        let row = |policy: &str, run: &str, hit: f64, free: f64, fetches: u64, stall: Duration| {
            println!(
                "| {name:<22} | {policy:<9} | {run:<9} | {:>7.1}% | {:>9.1}% | {fetches:>7} | {:>11.1} | {:>11.1}% |",
                100.0 * hit,
                100.0 * free,
                stall.as_secs_f64() * 1e3,
                100.0 * hit / belady.hit_rate().max(1e-12)
            );
        };
        for policy in SimPolicy::ALL {
            let r = simulate(&trace, capacity, policy);
            row(policy.name(), "simulated", r.hit_rate(), r.stall_free_rate(), r.fetches(), r.stall(fetch));
        }
        for (policy, kind, prefetch) in [
            ("lru", PolicyKind::Lru, false),
            ("frequency", PolicyKind::Frequency, false),
            ("predicted", PolicyKind::Lru, true),
        ] {
            let pager = Pager::new(config(dir, capacity * bytes, kind)).expect("pager");
            let moe = MoeConfig::new(ExpertLayout { n_ffn: trace.experts as u32, n_const: 2, n_copy: 1, n_zero: 1 });
            let cache =
                ExpertCache::new(pager.clone(), ExpertCacheConfig::new(trace.layers, moe, bytes)).expect("cache");
            let w = vec![1u8; bytes];
            for l in 0..trace.layers {
                for e in 0..trace.experts {
                    cache.load(l, e, &w).expect("load");
                }
            }
            pager.flush_all().expect("flush");
            for l in 0..trace.layers {
                for e in 0..trace.experts {
                    pager.evict(cache.id(l, e), Tier::Ddr).expect("evict");
                }
            }
            let s = cache.replay(&trace, ReplayOptions { prefetch, compute_per_access: compute }).expect("replay");
            let fetched = s.misses + s.prefetches;
            // Measured on the pager: transfers used by accesses are the misses
            // and the prefetches that were hit.
            let used = s.misses + s.prefetch_hits + s.late_prefetches;
            let hit = 1.0 - used as f64 / s.accesses.max(1) as f64;
            row(policy, "measured", hit, s.hit_rate(), fetched, s.stall);
        }
    }
}

fn optimizer_table(plan: &Plan, dir: &Path) {
    let (counts, partition, steps) = &plan.optimizer;
    // Measured right before the table: the disk's speed drifts.
    let (write, read) = raw_gbps(dir, plan.raw);
    println!();
    println!(
        "Optimizer offload (AdamW, {} threads): partitions of {partition} elements ({} KiB), DDR holds 6; raw NVMe \
         ({} MiB as 4 objects at once) write {write:.2} GB/s, read {read:.2} GB/s",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        (12 * partition) >> 10,
        plan.raw / MIB
    );
    println!("bound: the state read at the raw read GB/s plus the state written at the raw write GB/s");
    println!(
        "| {:>7} | {:>9} | {:>8} | {:>9} | {:>9} | {:>9} | {:>9} | {:>8} | {:>9} |",
        "params", "state MB", "step (s)", "read wait", "compute", "write", "bound (s)", "of bound", "NVMe GB/s"
    );
    println!(
        "|---------|-----------|----------|-----------|-----------|-----------|-----------|----------|-----------|"
    );
    for &n in counts {
        let state = tempfile::tempdir_in(dir).expect("state folder");
        let mut settings = OffloadSettings::new(config(dir, 6 * 12 * partition, PolicyKind::Lru), *partition);
        settings.threads = 0;
        let params: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 1e-3).collect();
        let grads: Vec<f32> = (0..n).map(|i| ((i * 7) % 1000) as f32 * 1e-4 - 0.05).collect();
        let mut opt = OptimizerOffload::create(state.path(), settings, &params).expect("create");
        let mut out = vec![0f32; n];
        let mut best = None;
        for _ in 0..*steps {
            let r = opt.step(&grads, &mut out).expect("step");
            if best.as_ref().is_none_or(|b: &memwall_tiers::clients::optimizer::StepReport| r.elapsed < b.elapsed) {
                best = Some(r);
            }
        }
        let r = best.expect("a step");
        let bytes = r.state_bytes;
        let bound = bytes as f64 / (read * 1e9) + bytes as f64 / (write * 1e9);
        let secs = |d: Duration| d.as_secs_f64();
        println!(
            "| {:>7} | {:>9.1} | {:>8.3} | {:>9.3} | {:>9.3} | {:>9.3} | {:>9.3} | {:>7.0}% | {:>9.2} |",
            if n >= 1 << 20 { format!("{}M", n >> 20) } else { n.to_string() },
            bytes as f64 / 1e6,
            secs(r.elapsed),
            secs(r.read_wait),
            secs(r.compute),
            secs(r.write_wait + r.commit),
            bound,
            100.0 * bound / secs(r.elapsed),
            2.0 * bytes as f64 / secs(r.elapsed) / 1e9
        );
    }
}

fn kv_table((shape, blocks, groups): &(KvShape, usize, Vec<usize>), dir: &Path, raw: usize) {
    let seq_bytes = blocks * shape.block_bytes();
    let (write, read) = raw_gbps(dir, raw);
    println!();
    println!(
        "KV swap: one sequence of {blocks} blocks of {} KiB ({} tokens, {} MiB; {} layers x {} kv heads x {}), vs \
         the pager's raw NVMe ({} MiB as 4 objects at once) write {write:.2} GB/s, read {read:.2} GB/s",
        shape.block_bytes() >> 10,
        blocks * shape.page_size,
        seq_bytes / MIB,
        shape.layers,
        shape.kv_heads,
        shape.head_dim,
        raw / MIB,
    );
    println!(
        "| {:<4} | {:>6} | {:>7} | {:>12} | {:>11} | {:>10} | {:>9} |",
        "to", "group", "objects", "out GB/s", "in GB/s", "out / raw", "in / raw"
    );
    println!("|------|--------|---------|--------------|-------------|------------|-----------|");
    let token = shape.layers * shape.token_elems();
    let k: Vec<bf16> = (0..token).map(|i| bf16::from_f32((i % 97) as f32 / 97.0)).collect();
    for (to, sizes) in [(Tier::Nvme, groups.clone()), (Tier::Ddr, vec![*groups.last().unwrap_or(&1)])] {
        for group in sizes {
            let pager =
                Pager::new(config(dir, shape.pool_bytes() + 2 * seq_bytes + MIB, PolicyKind::Lru)).expect("pager");
            let mut cfg = KvConfig::new(*shape);
            cfg.swap_group_blocks = group;
            let mut kv = KvCache::new(pager, cfg).expect("kv cache");
            let s = kv.add_sequence();
            for _ in 0..blocks * shape.page_size {
                kv.append(s, &k, &k).expect("append");
            }
            let reps = 3;
            let (mut out, mut inn) = (f64::MAX, f64::MAX);
            let mut objects = 0;
            for _ in 0..reps {
                let r = kv.swap_out(s, to).expect("swap out");
                objects = r.groups;
                out = out.min(r.elapsed.as_secs_f64());
                let r = kv.swap_in(s).expect("swap in");
                inn = inn.min(r.elapsed.as_secs_f64());
            }
            let (o, i) = (seq_bytes as f64 / out / 1e9, seq_bytes as f64 / inn / 1e9);
            let (ro, ri) = if to == Tier::Nvme {
                (format!("{:.0}%", 100.0 * o / write), format!("{:.0}%", 100.0 * i / read))
            } else {
                ("-".into(), "-".into())
            };
            println!("| {:<4} | {group:>6} | {objects:>7} | {o:>12.2} | {i:>11.2} | {ro:>10} | {ri:>9} |", to.name());
        }
    }
}
