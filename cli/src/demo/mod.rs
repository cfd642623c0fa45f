//! `memwall demo`: an MoE++ decoder stack generating tokens for several
//! sequences, with the FFN experts paged across the tiers (DDR <- NVMe on a
//! CPU machine) and KV caches of waiting sequences swapped out and back;
//! checked against a non-paged run of the same model.

mod backend;
mod gpu;
pub mod model;
mod paged;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use backend::{Backend, CpuBackend};
use gpu::{DeviceExperts, GpuBackend};
use memwall::gpu::Gpu;
use memwall::trace;
use memwall_tiers::clients::kv::{KvCache, KvConfig, SeqId};
use memwall_tiers::config::{Capacity, Toggle};
use memwall_tiers::{Config, Pager, Tier};

use model::{InMemoryExperts, Model, ModelConfig};
use paged::{PagedExperts, Predictor};

/// The demo's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Sequences generated (they take turns; see --active).
    #[arg(long, default_value_t = 4)]
    pub sequences: usize,
    /// Sequences decoded together; the others wait swapped out.
    #[arg(long, default_value_t = 2)]
    pub active: usize,
    /// New tokens per sequence.
    #[arg(long, default_value_t = 24)]
    pub tokens: usize,
    /// Decode steps between swaps of waiting and active sequences.
    #[arg(long, default_value_t = 4)]
    pub swap_every: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Attention heads (head dim 64; d_model = 64 x heads).
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Experts per layer: 12, 20 or 40 (the MoE++ paper's layouts).
    #[arg(long, default_value_t = 20)]
    pub experts: u32,
    /// Expert FFN hidden size.
    #[arg(long, default_value_t = 1024)]
    pub ffn: usize,
    /// FFN experts the DDR tier holds (the rest live on NVMe).
    #[arg(long, default_value_t = 16)]
    pub ddr_experts: usize,
    /// Tokens per KV-cache page.
    #[arg(long, default_value_t = 16)]
    pub page_size: usize,
    /// Weight seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Folder for the NVMe tier (default: a folder under the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the paged run's routing trace (expert accesses and next-layer
    /// predictions; the tier clients' policy simulator reads it).
    #[arg(long, value_name = "FILE")]
    pub routing_trace: Option<PathBuf>,
    /// How the next layer's experts are predicted for prefetch: the gating
    /// residual alone, or with pre-gating (the next router on this layer's
    /// input).
    #[arg(long, value_enum, default_value_t = Predictor::Pregated)]
    pub predictor: Predictor,
    /// Where to compute: the GPU kernels with experts and the KV pool in
    /// HBM, memwall's CPU paths with DDR as the top tier, or the GPU when
    /// one opens.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// FFN experts the HBM tier holds on a GPU run (the rest page from DDR
    /// and NVMe).
    #[arg(long, default_value_t = 8)]
    pub hbm_experts: usize,
}

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The GPU when `Gpu::new` opens one, else the CPU.
    Auto,
    /// memwall's CPU paths (DDR + NVMe).
    Cpu,
    /// The GPU kernels (HBM + DDR + NVMe); an error without one.
    Gpu,
}

/// Prompts, one per sequence.
fn prompt(i: usize) -> Vec<u8> {
    const P: [&str; 4] = ["memory wall ", "experts page ", "tiers hide ", "tokens flow "];
    P[i % P.len()].as_bytes().to_vec()
}

/// Round-robin schedule: which sequences decode at each step.
fn schedule(args: &DemoArgs) -> Vec<Vec<usize>> {
    let mut steps = Vec::new();
    let mut done = vec![0usize; args.sequences];
    // Each sequence feeds its prompt, then its generated tokens but the last.
    let need: Vec<usize> = (0..args.sequences).map(|s| prompt(s).len() + args.tokens - 1).collect();
    let mut window_start = 0;
    let mut since_swap = 0;
    while done.iter().zip(&need).any(|(d, n)| d < n) {
        let active: Vec<usize> = (0..args.sequences)
            .map(|k| (window_start + k) % args.sequences)
            .filter(|&s| done[s] < need[s])
            .take(args.active)
            .collect();
        for &s in &active {
            done[s] += 1;
        }
        steps.push(active);
        since_swap += 1;
        if since_swap == args.swap_every {
            window_start = (window_start + 1) % args.sequences;
            since_swap = 0;
        }
    }
    steps
}

/// Result of one run.
struct RunResult {
    tokens: Vec<Vec<u8>>,
    generated: usize,
    compute: Duration,
    elapsed: Duration,
    expert_calls: u64,
    zero_computation_slots: u64,
}

/// Runs the schedule over `kv`. With `paged`, experts come from the pager
/// and waiting sequences' KV blocks are swapped out to NVMe.
fn run(
    model: &Model,
    args: &DemoArgs,
    kv: &mut KvCache,
    experts: &dyn model::ExpertSource,
    backend: &dyn Backend,
    swap: bool,
    progress: bool,
) -> memwall::Result<RunResult> {
    let start = Instant::now();
    let seqs: Vec<SeqId> = (0..args.sequences).map(|_| kv.add_sequence()).collect();
    let mut tokens: Vec<Vec<u8>> = (0..args.sequences).map(prompt).collect();
    let mut fed = vec![0usize; args.sequences]; // tokens of `tokens[s]` already in the cache
    let mut r = RunResult {
        tokens: Vec::new(),
        generated: 0,
        compute: Duration::ZERO,
        elapsed: Duration::ZERO,
        expert_calls: 0,
        zero_computation_slots: 0,
    };
    let steps = schedule(args);
    let total = steps.len();
    for (i, active) in steps.iter().enumerate() {
        // Swap: waiting sequences out, scheduled ones in.
        if swap {
            for (s, &seq) in seqs.iter().enumerate() {
                let wanted = active.contains(&s);
                let out = kv.swapped(seq).map_err(model::kv_err)?.is_some();
                if !wanted && !out && fed[s] > 0 {
                    let _span = trace::span(format!("swap out seq {s}"), "swap");
                    kv.swap_out(seq, Tier::Nvme).map_err(model::kv_err)?;
                } else if wanted && out {
                    let _span = trace::span(format!("swap in seq {s}"), "swap");
                    kv.swap_in(seq).map_err(model::kv_err)?;
                }
            }
        }
        // Feed prompts one token per step (prefill through the decode path),
        // then generate.
        let input: Vec<u8> = active.iter().map(|&s| tokens[s][fed[s]]).collect();
        let batch: Vec<SeqId> = active.iter().map(|&s| seqs[s]).collect();
        let t0 = Instant::now();
        let (next, stats) = {
            let _span = trace::span(format!("decode step {i}"), "compute");
            model.step(&input, &batch, kv, experts, backend)?
        };
        r.compute += t0.elapsed();
        r.expert_calls += stats.expert_calls;
        r.zero_computation_slots += stats.zero_computation_slots;
        for (k, &s) in active.iter().enumerate() {
            fed[s] += 1;
            if fed[s] == tokens[s].len() {
                // Printable ASCII, so the demo's output reads as text.
                tokens[s].push(b' ' + next[k] % 95);
                r.generated += 1;
            }
        }
        if progress {
            show_progress(i + 1, total);
        }
    }
    if progress && std::io::stderr().is_terminal() {
        eprintln!();
    }
    r.elapsed = start.elapsed();
    r.tokens = tokens;
    Ok(r)
}

/// Step `done` of `total`: a bar redrawn in place on a terminal; a line at
/// each tenth otherwise (a log or a pipe keeps no carriage returns).
fn show_progress(done: usize, total: usize) {
    if std::io::stderr().is_terminal() {
        let w = 30 * done / total;
        eprint!("\r  [{}{}] step {done}/{total}", "#".repeat(w), " ".repeat(30 - w));
        let _ = std::io::stderr().flush();
    } else if 10 * done / total != 10 * (done - 1) / total {
        eprintln!("  step {done}/{total} ({}%)", 100 * done / total);
    }
}

/// Runs the demo: the paged run, then the non-paged check, then the table.
pub fn demo(args: &DemoArgs) -> Result<(), String> {
    if args.active == 0 || args.active > args.sequences || args.sequences == 0 {
        return Err(format!("--active {} must be in 1..=--sequences {}", args.active, args.sequences));
    }
    if args.heads == 0 || args.layers == 0 || args.ffn == 0 || args.tokens == 0 || args.page_size == 0 {
        return Err("--heads, --layers, --ffn, --tokens and --page-size must be positive".into());
    }
    if args.hbm_experts == 0 || args.ddr_experts == 0 {
        return Err(format!(
            "--hbm-experts {} and --ddr-experts {} must be at least 1 (an expert is pinned in the top tier while it computes)",
            args.hbm_experts, args.ddr_experts
        ));
    }
    let cfg = ModelConfig {
        vocab: 256,
        d_model: 64 * args.heads,
        heads: args.heads,
        kv_heads: (args.heads / 2).max(1),
        layers: args.layers,
        ffn: args.ffn,
        experts: args.experts,
        page_size: args.page_size,
        seed: args.seed,
    };
    if memwall::moe::ExpertLayout::paper(args.experts).is_none() {
        return Err(format!("--experts {}: use 12, 20 or 40 (the MoE++ paper's layouts)", args.experts));
    }
    let model = Model::new(cfg);
    let n_ffn = cfg.moe().layout.n_ffn as usize;
    let expert_bytes = cfg.expert_bytes();
    println!(
        "memwall demo: {} layers, d_model {}, {} experts ({} FFN of {:.1} MiB each, {:.1} MiB in all), {} sequences ({} active)",
        cfg.layers,
        cfg.d_model,
        cfg.experts,
        n_ffn,
        expert_bytes as f64 / (1 << 20) as f64,
        (cfg.layers * n_ffn * expert_bytes) as f64 / (1 << 20) as f64,
        args.sequences,
        args.active
    );

    let gpu = match args.device {
        DeviceChoice::Cpu => None,
        DeviceChoice::Gpu => Some(Gpu::new(0).map_err(|e| format!("--device gpu: {e}"))?),
        DeviceChoice::Auto => Gpu::new(0).ok(),
    };
    let dir =
        args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("memwall-demo-{}", std::process::id())));
    // Pages for every sequence at once (swapped sequences free theirs).
    let pages = args.sequences * (prompt(0).len().max(prompt(1).len()) + args.tokens).div_ceil(args.page_size) + 1;
    let kv_cfg = KvConfig::new(model.kv_shape(pages));
    // The top tier holds the KV pool beside its experts; DDR also stages
    // swap groups on their way to NVMe (two groups' room). A MiB of slack
    // for page rounding, less than one expert, so the tiers hold exactly
    // the experts the flags say.
    let pool = kv_cfg.shape.pool_bytes();
    let staging = 2 * kv_cfg.swap_group_blocks * kv_cfg.shape.block_bytes();
    let slack = 1 << 20;
    let nvme = 2 * cfg.layers * n_ffn * expert_bytes + (256 << 20);
    // On a GPU the top tier is HBM (experts and the KV pool), else DDR.
    let on_gpu = gpu.is_some();
    let with_hbm = move |mut c: Config, hbm: usize| {
        if on_gpu {
            c.hbm.enabled = Toggle::On;
            c.hbm.capacity = Capacity::Bytes(hbm as u64);
        }
        c
    };
    let ddr = args.ddr_experts * expert_bytes + staging + slack + if on_gpu { 0 } else { pool };
    let hbm = args.hbm_experts * expert_bytes + pool + slack;
    let pager =
        Pager::new(with_hbm(Config::small(dir.clone(), ddr as u64, nvme as u64), hbm)).map_err(|e| e.to_string())?;
    let tiers: Vec<String> = pager.tiers().iter().map(|t| format!("{t:?}")).collect();
    let held = if on_gpu {
        format!("HBM holds {}, DDR {} of {} experts", args.hbm_experts, args.ddr_experts, cfg.layers * n_ffn)
    } else {
        format!("DDR holds {} of {} experts", args.ddr_experts, cfg.layers * n_ffn)
    };
    println!("tiers: {} ({held})", tiers.join(" + "));
    let in_memory = InMemoryExperts::new(&cfg);
    // The reference run's experts: all in memory, on the device for a GPU run.
    let (backend, reference_experts): (Box<dyn Backend>, Box<dyn model::ExpertSource>) = match gpu {
        Some(gpu) => {
            let on_device = DeviceExperts::new(&gpu, &in_memory).map_err(|e| e.to_string())?;
            (Box::new(GpuBackend::new(gpu).map_err(|e| e.to_string())?), Box::new(on_device))
        }
        None => (Box::new(CpuBackend), Box::new(InMemoryExperts::new(&cfg))),
    };
    println!("compute: {}", backend.name());
    let experts = PagedExperts::new(&pager, &cfg, &in_memory, args.predictor).map_err(|e| e.to_string())?;
    drop(in_memory);
    let mut kv = KvCache::new(pager.clone(), kv_cfg).map_err(|e| e.to_string())?;

    eprintln!("paged run:");
    let paged = run(&model, args, &mut kv, &experts, backend.as_ref(), true, true).map_err(|e| e.to_string())?;
    eprintln!("non-paged reference run:");
    let plain_dir = dir.join("reference");
    let plain_pager =
        Pager::new(with_hbm(Config::small(&plain_dir, 1 << 30, 1 << 30), 1 << 30)).map_err(|e| e.to_string())?;
    let mut plain_kv = KvCache::new(plain_pager, kv_cfg).map_err(|e| e.to_string())?;
    let plain = run(&model, args, &mut plain_kv, reference_experts.as_ref(), backend.as_ref(), false, false)
        .map_err(|e| e.to_string())?;
    drop(plain_kv);
    let identical = paged.tokens == plain.tokens;

    for (s, t) in paged.tokens.iter().enumerate() {
        println!("  seq {s}: {:?}", String::from_utf8_lossy(t));
    }
    let stats = pager.stats();
    let es = experts.stats();
    let ks = kv.stats();
    let stall = es.stall + ks.time_out + ks.time_in;
    println!();
    println!("| metric | paged | non-paged |");
    println!("| --- | --- | --- |");
    println!("| tokens generated | {} | {} |", paged.generated, plain.generated);
    println!(
        "| tokens/s | {:.1} | {:.1} |",
        paged.generated as f64 / paged.elapsed.as_secs_f64(),
        plain.generated as f64 / plain.elapsed.as_secs_f64()
    );
    println!("| wall time | {:.2} s | {:.2} s |", paged.elapsed.as_secs_f64(), plain.elapsed.as_secs_f64());
    println!(
        "| compute (decode steps) | {:.2} s | {:.2} s |",
        (paged.compute.saturating_sub(es.stall)).as_secs_f64(),
        plain.compute.as_secs_f64()
    );
    println!("| stalls (expert fetch + KV swap) | {:.3} s | 0 |", stall.as_secs_f64());
    println!(
        "| FFN expert calls / zero-computation slots | {} / {} | {} / {} |",
        paged.expert_calls, paged.zero_computation_slots, plain.expert_calls, plain.zero_computation_slots
    );
    println!(
        "| KV swaps out / in (groups of blocks written) | {} / {} ({}) | 0 / 0 |",
        ks.swaps_out, ks.swaps_in, ks.group_objects
    );
    println!(
        "| expert cache: hit rate, prefetch hits / misses, wasted prefetches | {:.0}%, {} / {}, {} | - |",
        100.0 * es.hit_rate(),
        es.prefetch_hits,
        es.misses,
        es.wasted_prefetches
    );
    for t in pager.tiers() {
        let s = stats.tier(t);
        println!(
            "| {t:?}: hits / misses, bytes in / out | {} / {} ({:.0}% hits), {:.1} / {:.1} MiB | - |",
            s.hits,
            s.misses,
            100.0 * s.hits as f64 / (s.hits + s.misses).max(1) as f64,
            s.bytes_in as f64 / (1 << 20) as f64,
            s.bytes_out as f64 / (1 << 20) as f64
        );
    }
    // The pager's achieved NVMe rates beside the machine profile's (`memwall
    // measure`), when there is one.
    let nvme = stats.tier(Tier::Nvme);
    let machine = memwall::profile::Profile::load(&memwall::profile::Profile::default_path()).ok();
    let measured = |key: &str| {
        machine.as_ref().and_then(|m| m.get(key)).map_or("run `memwall measure`".to_string(), |v| format!("{v:.2}"))
    };
    println!(
        "| NVMe GB/s achieved: read / write (memwall measure: read / write) | {:.2} / {:.2} ({} / {}) | - |",
        nvme.gbps_out(),
        nvme.gbps_in(),
        measured("nvme_read_gbps"),
        measured("nvme_write_gbps")
    );
    println!("| check | {} | |", if identical { "identical tokens to the non-paged run" } else { "MISMATCH" });
    if let Some(path) = &args.routing_trace {
        let t = experts.take_trace().ok_or("no routing trace was recorded")?;
        t.save(path).map_err(|e| e.to_string())?;
        println!(
            "routing trace: {} accesses written to {} (prediction accuracy {:.0}%)",
            t.access_count(),
            path.display(),
            100.0 * t.prediction_accuracy()
        );
    }
    drop(kv);
    drop(experts);
    drop(pager);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if identical {
        Ok(())
    } else {
        Err("the paged run's tokens differ from the non-paged run's".into())
    }
}
