//! `memwall measure`: this machine's bandwidths, written as a profile.

use std::hint::black_box;
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use memwall::datatype::{Committed, Datatype};
use memwall::profile::Profile;
use memwall::trace;

/// GB/s of `bytes` moved per call of `f`, median over ~`budget`.
fn rate(bytes: usize, budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut times = Vec::new();
    while start.elapsed() < budget || times.len() < 3 {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    bytes as f64 / times[times.len() / 2] / 1e9
}

/// One line of progress, then the result on the same line.
/// On a terminal the line reads `...` while the measurement runs; a log or
/// a pipe gets only the result.
fn step(name: &str, f: impl FnOnce() -> Option<f64>) -> Option<f64> {
    let terminal = std::io::stderr().is_terminal();
    if terminal {
        eprint!("  {name:<28} ...");
        let _ = std::io::stderr().flush();
    }
    let _span = trace::span(name.to_string(), "measure");
    let r = f();
    let cr = if terminal { "\r" } else { "" };
    match r {
        Some(v) => eprintln!("{cr}  {name:<28} {v:>8.2} GB/s"),
        None => eprintln!("{cr}  {name:<28}      n/a"),
    }
    r
}

/// Runs every measurement this machine supports and returns the profile.
/// `quick` shortens each measurement (for tests).
pub fn measure(quick: bool, nvme_dir: Option<&Path>) -> Profile {
    let budget = Duration::from_millis(if quick { 20 } else { 400 });
    let size = if quick { 1 << 20 } else { 64 << 20 };
    let mut p = Profile::default();
    eprintln!("measuring ({}):", if quick { "quick" } else { "about 10 s" });

    let src = vec![1u8; size];
    let mut dst = vec![0u8; size];
    if let Some(v) = step("DDR memcpy", || Some(rate(size, budget, || dst.copy_from_slice(black_box(&src))))) {
        p.set("ddr_memcpy_gbps", v);
    }
    for block in [16usize, 64, 512] {
        let rows = (size / 2 / block) as i64;
        let t = Datatype::byte().contiguous(block as i64).and_then(|b| b.hvector(rows, 1, 2 * block as i64));
        let Ok(c) = t.and_then(|t| Committed::new(&t)) else { continue };
        let n = rows as usize * block;
        let name = format!("CPU pack, {block} B blocks");
        if let Some(v) = step(&name, || {
            Some(rate(n, budget, || {
                let mut pos = 0;
                let _ = c.pack(black_box(&src), 0, 1, &mut dst[..n], &mut pos);
            }))
        }) {
            p.set(format!("cpu_pack_gbps_{block}"), v);
        }
    }
    if let Some(dir) = nvme_dir {
        measure_files(&mut p, dir, size, budget);
    }
    measure_gpu(&mut p, size, budget);
    p
}

/// NVMe through the pager: an object written back from DDR to the NVMe
/// tier (evict) and fetched back (fetch), with the data file in `dir`.
fn measure_files(p: &mut Profile, dir: &Path, size: usize, budget: Duration) {
    use memwall_tiers::{Config, ObjectClass, ObjectId, ObjectSpec, Pager, Tier};
    let dir = dir.join(format!("memwall-measure-{}", std::process::id()));
    let pager = match Pager::new(Config::small(&dir, 2 * size as u64, 4 * size as u64)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("  NVMe tier: {e}");
            return;
        }
    };
    let id = ObjectId(1);
    let data = vec![7u8; size];
    if pager.register(ObjectSpec::new(1, size, ObjectClass::Other)).and_then(|_| pager.insert(id, &data)).is_err() {
        eprintln!("  NVMe tier: cannot write the test object");
        return;
    }
    if let Some(v) = step("NVMe write (pager)", || {
        let mut ok = true;
        let r = rate(size, budget, || {
            // Dirty the DDR copy, then write it back to NVMe.
            ok &= pager.pin_mut(id, Tier::Ddr).is_ok();
            ok &= pager.evict(id, Tier::Ddr).is_ok();
        });
        ok.then_some(r)
    }) {
        p.set("nvme_write_gbps", v);
    }
    if let Some(v) = step("NVMe read (pager)", || {
        let mut ok = true;
        let r = rate(size, budget, || {
            ok &= pager.fetch(id, Tier::Ddr).is_ok();
            ok &= pager.pin(id, Tier::Ddr).is_ok();
            // Drop the clean DDR copy again (no write), so the next fetch reads NVMe.
            ok &= pager.evict(id, Tier::Ddr).is_ok();
        });
        ok.then_some(r)
    }) {
        p.set("nvme_read_gbps", v);
    }
    let io = pager.stats().nvme;
    let direct = if io.direct { "O_DIRECT" } else { "buffered" };
    eprintln!("  NVMe I/O: {} x {} lanes, {direct}, {} KiB requests", io.path, io.lanes, io.block_size >> 10);
    drop(pager);
    let _ = std::fs::remove_dir_all(&dir);
}

fn measure_gpu(p: &mut Profile, size: usize, budget: Duration) {
    let gpu = match memwall::gpu::Gpu::new(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("  GPU: {e}");
            return;
        }
    };
    let Ok(stream) = gpu.new_stream() else { return };
    let Ok(mut host) = gpu.alloc_pinned::<u8>(size, memwall::gpu::PinnedKind::Cached) else { return };
    let (Ok(mut d1), Ok(mut d2)) = (stream.alloc_zeros::<u8>(size), stream.alloc_zeros::<u8>(size)) else { return };
    let sync = |s: &std::sync::Arc<memwall::gpu::cuda::CudaStream>| s.synchronize().is_ok();
    if let Some(v) = step("H2D (pinned)", || {
        Some(rate(size, budget, || {
            let _ = stream.memcpy_htod(host.host_slice(), &mut d1);
            sync(&stream);
        }))
    }) {
        p.set("h2d_gbps", v);
    }
    if let Some(v) = step("D2H (pinned)", || {
        Some(rate(size, budget, || {
            let _ = stream.memcpy_dtoh(&d1, host.host_slice_mut());
            sync(&stream);
        }))
    }) {
        p.set("d2h_gbps", v);
    }
    if let Some(v) = step("D2D", || {
        Some(
            2.0 * rate(size, budget, || {
                let _ = stream.memcpy_dtod(&d1, &mut d2);
                sync(&stream);
            }),
        )
    }) {
        p.set("d2d_gbps", v);
    }
    for block in [16usize, 64, 512] {
        let rows = (size / 2 / block) as i64;
        let t = Datatype::byte().contiguous(block as i64).and_then(|b| b.hvector(rows, 1, 2 * block as i64));
        let Ok(c) = t.and_then(|t| Committed::new(&t)) else { continue };
        let n = rows as usize * block;
        if let Some(v) = step(&format!("GPU pack, {block} B blocks"), || {
            Some(rate(n, budget, || {
                let mut pos = 0;
                let _ = c.pack_gpu(&gpu, &stream, &d1, 0, 1, &mut d2, &mut pos);
                sync(&stream);
            }))
        }) {
            p.set(format!("gpu_pack_gbps_{block}"), v);
        }
    }
    // One-shot pack straight into mapped pinned host memory (the MPI
    // interposer's `mapped` method), 64 B blocks.
    let rows = (size / 2 / 64) as i64;
    let t = Datatype::byte().contiguous(64).and_then(|b| b.hvector(rows, 1, 128));
    let (Ok(c), Ok(mut mapped)) =
        (t.and_then(|t| Committed::new(&t)), gpu.alloc_pinned::<u8>(size / 2, memwall::gpu::PinnedKind::Mapped))
    else {
        return;
    };
    let Ok(mut view) = mapped.mapped_view() else { return };
    if let Some(v) = step("GPU pack into mapped host", || {
        let mut ok = true;
        let r = rate(size / 2, budget, || {
            let mut pos = 0;
            ok &= c.pack_gpu(&gpu, &stream, &d1, 0, 1, &mut view, &mut pos).is_ok();
            sync(&stream);
        });
        ok.then_some(r)
    }) {
        p.set("gpu_pack_mapped_gbps", v);
    }
}
