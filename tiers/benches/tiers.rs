//! `cargo bench -p memwall-tiers`: NVMe read and write GB/s through the
//! pager beside fio on the same file (same block size and queue depth, same
//! run), the share of a prefetch hidden behind a simulated compute step, and
//! DDR<->HBM copies beside raw pinned cudaMemcpy when a GPU exists.
//!
//! Without `--bench` (as under `cargo test --all-targets`) it runs a tiny
//! smoke case in well under a second. Set `MEMWALL_BENCH_DIR` to put the
//! data file on another disk (default: the system temp dir).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use memwall_tiers::config::{Capacity, Toggle};
use memwall_tiers::memwall::gpu::{Gpu, PinnedKind};
use memwall_tiers::nvme::IoPath;
use memwall_tiers::{Config, ObjectClass, ObjectId, ObjectSpec, Pager, Tier};

const MIB: usize = 1 << 20;

/// What one run measures.
struct Plan {
    /// Total bytes per NVMe measurement.
    total: usize,
    /// Bytes per object.
    object: usize,
    /// (block size, queue depth, registered buffers) to measure.
    nvme: Vec<(usize, u32, bool)>,
    /// Object size and repetitions of the prefetch-overlap measurement.
    overlap: (usize, usize),
    /// Run fio beside the pager.
    fio: bool,
    /// Alternating pager/fio rounds per NVMe row (best of each kept).
    rounds: usize,
    /// Bytes per DDR<->HBM copy, and repetitions.
    hbm: (usize, usize),
    /// Concurrent fetches: object size, objects, fetching threads.
    lanes: (usize, usize, usize),
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full {
        Plan {
            total: 1 << 30,
            object: 64 * MIB,
            nvme: vec![
                (128 << 10, 8, true),
                (MIB, 1, true),
                (MIB, 8, true),
                (MIB, 32, true),
                (MIB, 32, false),
                (4 * MIB, 8, true),
            ],
            overlap: (32 * MIB, 8),
            fio: true,
            rounds: 3,
            hbm: (256 * MIB, 10),
            lanes: (2 * MIB, 256, 3),
        }
    } else {
        check_fio_parser();
        Plan {
            total: 4 * MIB,
            object: MIB,
            nvme: vec![(64 << 10, 4, true)],
            overlap: (MIB, 2),
            fio: false,
            rounds: 1,
            hbm: (MIB, 2),
            lanes: (MIB, 6, 3),
        }
    };
    let dir = std::env::var_os("MEMWALL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("memwall-tiers-bench"));
    println!("memwall-tiers bench ({}), data file in {}", if full { "full" } else { "smoke" }, dir.display());
    let fio = plan.fio && fio_available();
    if plan.fio && !fio {
        println!("fio not installed: the fio column is empty (Debian package: fio)");
    }
    nvme_table(&plan, &dir, fio);
    overlap(&plan, &dir);
    lanes_table(&plan, &dir);
    hbm_table(&plan, &dir);
}

fn config(dir: &Path, block: usize, qd: u32, registered: bool, ddr: usize) -> Config {
    let mut c = Config::default();
    c.hbm.enabled = Toggle::Off;
    c.ddr.capacity = Capacity::Bytes(ddr as u64);
    c.nvme.dir = dir.to_path_buf();
    c.nvme.capacity = Capacity::Bytes(64 << 30);
    c.nvme.block_size = block;
    c.nvme.queue_depth = qd;
    c.nvme.register_buffers = registered;
    c
}

/// Registers and inserts `total / object` objects of recognisable bytes.
fn fill(p: &Pager, total: usize, object: usize) -> Vec<ObjectId> {
    let pattern: Vec<u8> = (0..object).map(|i| (i * 7 + i / 4096) as u8).collect();
    (0..(total / object) as u64)
        .map(|id| {
            p.register(ObjectSpec::new(id, object, ObjectClass::Other)).expect("register");
            p.insert(ObjectId(id), &pattern).expect("insert");
            ObjectId(id)
        })
        .collect()
}

fn gbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn nvme_table(plan: &Plan, dir: &Path, fio: bool) {
    println!();
    println!(
        "NVMe through the pager vs fio on the same file ({} MiB per run, O_DIRECT, best of {} alternating rounds)",
        plan.total / MIB,
        plan.rounds
    );
    println!(
        "(grow: first write, extending the data file; write: rewriting allocated blocks, as fio's timed run does)"
    );
    println!(
        "| {:<5} | {:>8} | {:>3} | {:>10} | {:>10} | {:>8} | {:>8} | {:<24} |",
        "op", "block", "qd", "registered", "pager GB/s", "fio GB/s", "pager/fio", "path"
    );
    println!("|-------|----------|-----|------------|------------|----------|-----------|--------------------------|");
    for &(block, qd, registered) in &plan.nvme {
        let pager = match Pager::new(config(dir, block, qd, registered, plan.total * 2)) {
            Ok(p) => p,
            Err(e) => {
                println!("| pager could not start: {e}");
                continue;
            }
        };
        let ids = fill(&pager, plan.total, plan.object);
        let t = Instant::now();
        pager.flush_all().expect("flush");
        let write = gbps(plan.total, t.elapsed());

        let info = pager.stats().nvme;
        let (path, engine, regs) = match info.path {
            IoPath::IoUring { registered_buffers, queue_depth } => {
                let regs = if registered_buffers { format!("{} blocks", info.registered_blocks) } else { "no".into() };
                (format!("io_uring qd {queue_depth}"), "io_uring", regs)
            }
            IoPath::Pread => ("pread".to_string(), "psync", "no".into()),
        };
        let fio_qd = if engine == "psync" { 1 } else { qd };
        // Rounds alternate the pager and fio on the same file and keep each
        // side's best (this VM's disk varies by tens of percent run to run).
        let (mut read, mut rewrite) = (0f64, 0f64);
        let (mut fio_read, mut fio_write): (Option<f64>, Option<f64>) = (None, None);
        let best = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        for _ in 0..plan.rounds {
            // Write again: dirtying drops the NVMe copies and frees their
            // extents, so this pass overwrites blocks the file already has
            // (as fio, which lays its file out before timing, does). It
            // comes first in a round because fio's write, last, clobbers
            // the pager's extents (the read would fail its checksums).
            for &id in &ids {
                drop(pager.pin_mut(id, Tier::Ddr).expect("pin_mut"));
            }
            let t = Instant::now();
            pager.flush_all().expect("flush");
            rewrite = rewrite.max(gbps(plan.total, t.elapsed()));
            for &id in &ids {
                pager.evict(id, Tier::Ddr).expect("evict");
            }
            let t = Instant::now();
            for &id in &ids {
                pager.fetch(id, Tier::Ddr).expect("fetch");
            }
            read = read.max(gbps(plan.total, t.elapsed()));
            if fio {
                fio_read = best(fio_read, run_fio(&info.file, "read", block, fio_qd, engine, plan.total));
                fio_write = best(fio_write, run_fio(&info.file, "write", block, fio_qd, engine, plan.total));
            }
        }
        let direct = if info.direct { "" } else { ", buffered" };
        // "grow": the first write, which also extends the data file;
        // "write": rewriting allocated blocks, fio's conditions (fio lays
        // its file out before it times).
        for (op, mine, theirs) in [("grow", write, None), ("write", rewrite, fio_write), ("read", read, fio_read)] {
            let (f, ratio) = match theirs {
                Some(f) => (format!("{f:.2}"), format!("{:.0}%", 100.0 * mine / f)),
                None => ("-".into(), "-".into()),
            };
            println!(
                "| {op:<5} | {:>4} KiB | {qd:>3} | {regs:>10} | {mine:>10.2} | {f:>8} | {ratio:>9} | {:<24} |",
                block >> 10,
                format!("{path}{direct}")
            );
        }
        drop(pager);
    }
}

fn fio_available() -> bool {
    Command::new("fio").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// fio's bandwidth in GB/s on `file` with the pager's block size, queue
/// depth and engine.
fn run_fio(file: &Path, rw: &str, block: usize, qd: u32, engine: &str, total: usize) -> Option<f64> {
    let out = Command::new("fio")
        .args([
            "--name=memwall",
            &format!("--filename={}", file.display()),
            &format!("--rw={rw}"),
            &format!("--bs={block}"),
            &format!("--iodepth={qd}"),
            &format!("--ioengine={engine}"),
            "--direct=1",
            &format!("--size={total}"),
            "--end_fsync=1",
            "--output-format=json",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        println!("| fio failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    fio_bw_bytes(&String::from_utf8_lossy(&out.stdout), rw).map(|b| b / 1e9)
}

/// `jobs[0].<rw>.bw_bytes` from fio's JSON output.
fn fio_bw_bytes(json: &str, rw: &str) -> Option<f64> {
    let key = format!("\"{rw}\"");
    let mut rest = json;
    loop {
        let at = rest.find(&key)?;
        rest = &rest[at + key.len()..];
        // `"read"` also appears as a value (`"rw" : "read"` in the job
        // options): only `"read" : {` opens the statistics.
        let Some(after) = rest.trim_start().strip_prefix(':') else { continue };
        let after = after.trim_start();
        if after.starts_with('{') {
            rest = after;
            break;
        }
    }
    let at = rest.find("\"bw_bytes\"")?;
    let value = rest[at + "\"bw_bytes\"".len()..].trim_start().strip_prefix(':')?.trim_start();
    let end = value.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(value.len());
    value[..end].parse().ok()
}

fn check_fio_parser() {
    let sample = r#"{"fio version" : "fio-3.33", "jobs" : [ { "jobname" : "memwall", "job options" : { "rw" : "read" },
        "read" : { "io_bytes" : 4194304, "bw_bytes" : 2147483648, "bw" : 2097152 },
        "write" : { "io_bytes" : 0, "bw_bytes" : 0 } } ],
        "disk_util" : [ { "name" : "vda", "read_ios" : 1 } ] }"#;
    assert_eq!(fio_bw_bytes(sample, "read"), Some(2147483648.0));
    assert_eq!(fio_bw_bytes(sample, "write"), Some(0.0));
    assert_eq!(fio_bw_bytes("{}", "read"), None);
}

/// Simulated compute: busy work for `d`.
fn compute(d: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 1u64;
    while start.elapsed() < d {
        for _ in 0..1000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
    }
    x
}

fn overlap(plan: &Plan, dir: &Path) {
    let (object, reps) = plan.overlap;
    let pager = Pager::new(config(dir, MIB.min(object), 32, true, object * (reps + 2))).expect("pager");
    let ids = fill(&pager, object * reps, object);
    pager.flush_all().expect("flush");
    for &id in &ids {
        pager.evict(id, Tier::Ddr).expect("evict");
    }
    // Transfer alone.
    let mut transfer = Duration::ZERO;
    for &id in &ids {
        let t = Instant::now();
        pager.fetch(id, Tier::Ddr).expect("fetch");
        transfer += t.elapsed();
        pager.evict(id, Tier::Ddr).expect("evict");
    }
    let transfer = transfer / reps as u32;
    let step = transfer.mul_f64(1.25);
    let mut stall = Duration::ZERO;
    let mut sink = 0u64;
    for &id in &ids {
        let ticket = pager.prefetch(id, Tier::Ddr);
        sink ^= compute(step);
        let t = Instant::now();
        ticket.wait().expect("prefetch");
        stall += t.elapsed();
        drop(pager.pin(id, Tier::Ddr).expect("pin after prefetch"));
        pager.evict(id, Tier::Ddr).expect("evict");
    }
    let stall = stall / reps as u32;
    let hidden = (1.0 - stall.as_secs_f64() / transfer.as_secs_f64()).clamp(0.0, 1.0);
    println!();
    println!(
        "prefetch overlap: {} MiB object NVMe->DDR, transfer {:.2} ms, compute step {:.2} ms, stall {:.3} ms: \
         {:.1}% hidden (goal >= 90% when compute >= transfer)",
        object / MIB,
        transfer.as_secs_f64() * 1e3,
        step.as_secs_f64() * 1e3,
        stall.as_secs_f64() * 1e3,
        hidden * 100.0,
    );
    std::hint::black_box(sink);
}

/// Several threads fetching different objects NVMe->DDR at once (a
/// caller and prefetch workers), with one lane (one transfer at a time) and
/// with a lane per thread; rounds alternate and keep each side's best.
fn lanes_table(plan: &Plan, dir: &Path) {
    let (object, count, threads) = plan.lanes;
    let total = object * count;
    let mut best = [(0f64, f64::MAX); 2];
    for _ in 0..plan.rounds {
        for (k, lanes) in [1, threads].into_iter().enumerate() {
            let mut c = config(dir, MIB.min(object), 32, true, total * 2);
            c.nvme.lanes = Some(lanes);
            let pager = Pager::new(c).expect("pager");
            let ids = fill(&pager, total, object);
            pager.flush_all().expect("flush");
            for &id in &ids {
                pager.evict(id, Tier::Ddr).expect("evict");
            }
            let t = Instant::now();
            let waits: Vec<Duration> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads)
                    .map(|w| {
                        let (pager, ids) = (&pager, &ids);
                        s.spawn(move || {
                            ids.iter()
                                .skip(w)
                                .step_by(threads)
                                .map(|&id| {
                                    let t = Instant::now();
                                    pager.fetch(id, Tier::Ddr).expect("fetch");
                                    t.elapsed()
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers.into_iter().flat_map(|w| w.join().expect("fetch thread")).collect()
            });
            let rate = gbps(total, t.elapsed());
            let mean_ms = waits.iter().sum::<Duration>().as_secs_f64() * 1e3 / waits.len() as f64;
            best[k] = (best[k].0.max(rate), best[k].1.min(mean_ms));
        }
    }
    println!();
    println!(
        "{threads} threads fetching {count} objects of {} MiB NVMe->DDR at once (best of {} alternating rounds)",
        object / MIB,
        plan.rounds
    );
    println!("| {:>5} | {:>8} | {:>13} |", "lanes", "GB/s", "mean fetch ms");
    println!("|-------|----------|---------------|");
    for (lanes, (rate, ms)) in [1, threads].into_iter().zip(best) {
        println!("| {lanes:>5} | {rate:>8.2} | {ms:>13.2} |");
    }
}

fn hbm_table(plan: &Plan, dir: &Path) {
    println!();
    let gpu = match Gpu::new(0) {
        Ok(g) => g,
        Err(e) => {
            println!("DDR<->HBM: skipped ({e})");
            return;
        }
    };
    let (size, reps) = plan.hbm;
    // Raw pinned copies, the cudaMemcpy-class reference.
    let raw = || -> Result<(f64, f64), memwall_tiers::memwall::Error> {
        let stream = gpu.new_stream()?;
        let mut host = gpu.alloc_pinned::<u8>(size, PinnedKind::Cached)?;
        let mut dev = stream.alloc_zeros::<u8>(size).map_err(|e| memwall_tiers::memwall::Error::driver("alloc", e))?;
        let d = |e| memwall_tiers::memwall::Error::driver("copy", e);
        let t = Instant::now();
        for _ in 0..reps {
            stream.memcpy_htod(host.as_slice()?, &mut dev).map_err(d)?;
        }
        stream.synchronize().map_err(d)?;
        let up = gbps(size * reps, t.elapsed());
        let t = Instant::now();
        for _ in 0..reps {
            stream.memcpy_dtoh(&dev, host.as_mut_slice()?).map_err(d)?;
        }
        stream.synchronize().map_err(d)?;
        Ok((up, gbps(size * reps, t.elapsed())))
    };
    let (raw_up, raw_down) = match raw() {
        Ok(r) => r,
        Err(e) => {
            println!("DDR<->HBM: raw copies failed: {e}");
            return;
        }
    };
    let mut c = config(dir, MIB, 32, true, size * (reps + 1));
    c.hbm.enabled = Toggle::On;
    c.hbm.capacity = Capacity::Bytes((size * 2) as u64);
    let pager = match Pager::new(c) {
        Ok(p) => p,
        Err(e) => {
            println!("DDR<->HBM: pager failed: {e}");
            return;
        }
    };
    let ids = fill(&pager, size * reps, size);
    let (mut up, mut down) = (Duration::ZERO, Duration::ZERO);
    for &id in &ids {
        let t = Instant::now();
        pager.fetch(id, Tier::Hbm).expect("fetch to HBM");
        up += t.elapsed();
        // Make the HBM copy the only one, so evicting it writes back.
        drop(pager.pin_mut(id, Tier::Hbm).expect("pin_mut"));
        let t = Instant::now();
        pager.evict(id, Tier::Hbm).expect("evict from HBM");
        down += t.elapsed();
    }
    println!("DDR<->HBM on {} ({} MiB copies, pinned host memory)", gpu.props().name, size / MIB);
    println!("| {:<10} | {:>10} | {:>16} | {:>6} |", "direction", "pager GB/s", "raw pinned GB/s", "ratio");
    println!("|------------|------------|------------------|--------|");
    for (dir, mine, raw) in
        [("DDR->HBM", gbps(size * reps, up), raw_up), ("HBM->DDR", gbps(size * reps, down), raw_down)]
    {
        println!("| {dir:<10} | {mine:>10.2} | {raw:>16.2} | {:>5.0}% |", 100.0 * mine / raw);
    }
}
