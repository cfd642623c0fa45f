//! The `memwall` binary as a user runs it.

use std::process::Command;

/// The binary under test: `MEMWALL_BIN` where the GPU bundle carried it to
/// another machine, else the one cargo built.
fn memwall() -> Command {
    Command::new(std::env::var_os("MEMWALL_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_memwall").into()))
}

#[test]
fn info_exits_zero_and_reports_the_build() {
    let out = memwall().arg("info").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}: {text}", out.status);
    assert!(text.contains(concat!("memwall ", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("compute_80 (ISA 9.0)"), "{text}");
    assert!(text.contains("strided_copy"), "{text}");
    if memwall::gpu::driver_present() {
        assert!(text.contains("CUDA driver"), "{text}");
    } else {
        assert!(text.contains("no CUDA driver: CPU only"), "{text}");
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = memwall().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));
}

#[test]
fn measure_writes_a_profile_and_a_trace() {
    let dir = std::env::temp_dir().join(format!("memwall-measure-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let profile = dir.join("profile.toml");
    let trace = dir.join("trace.json");
    let out = memwall()
        .args(["--trace", trace.to_str().unwrap(), "measure", "--quick", "--out", profile.to_str().unwrap(), "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = memwall::profile::Profile::load(&profile).unwrap();
    for key in ["ddr_memcpy_gbps", "cpu_pack_gbps_64", "nvme_read_gbps", "nvme_write_gbps"] {
        let v = p.get(key).unwrap_or_else(|| panic!("{key} missing from {p:?}"));
        assert!(v > 0.0 && v.is_finite(), "{key} = {v}");
    }
    let t = std::fs::read_to_string(&trace).unwrap();
    assert!(t.contains("\"name\":\"DDR memcpy\"") && t.contains("\"ph\":\"X\""), "{t}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn demo_pages_experts_swaps_sequences_and_matches_the_non_paged_run() {
    let dir = std::env::temp_dir().join(format!("memwall-demo-test-{}", std::process::id()));
    let trace = std::env::temp_dir().join(format!("memwall-demo-test-{}.trace", std::process::id()));
    let out = memwall()
        .args(["demo", "--device", "cpu", "--layers", "2", "--heads", "2", "--ffn", "128", "--experts", "12"])
        .args([
            "--tokens",
            "5",
            "--sequences",
            "3",
            "--active",
            "2",
            "--swap-every",
            "2",
            "--ddr-experts",
            "3",
            "--dir",
        ])
        .arg(&dir)
        .arg("--routing-trace")
        .arg(&trace)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("| check | identical tokens to the non-paged run |"), "{text}");
    assert!(text.contains("| tokens generated | 15 | 15 |"), "{text}");
    // Experts did not all fit in DDR: some were fetched from NVMe.
    let nvme_line = text.lines().find(|l| l.starts_with("| Ddr:")).expect("a DDR row");
    assert!(!nvme_line.contains("/ 0 ("), "expected DDR misses: {nvme_line}");
    let swaps = text.lines().find(|l| l.starts_with("| KV swaps out / in")).expect("a swap row");
    assert!(!swaps.contains("| 0 / 0 (0) |"), "expected swaps: {swaps}");
    // The routing trace loads, and has one access per FFN expert call.
    let t = memwall_tiers::clients::expert::Trace::load(&trace).unwrap();
    let calls = text.lines().find(|l| l.starts_with("| FFN expert calls")).unwrap();
    assert!(calls.contains(&format!("| {} /", t.access_count())), "{calls} vs {} accesses", t.access_count());
    assert_eq!((t.layers, t.experts), (2, 8));
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(trace);
}

#[test]
fn demo_rejects_bad_flags() {
    let out = memwall().args(["demo", "--experts", "13"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--experts 13"));
}

#[test]
fn simulate_experts_replays_a_trace_and_belady_is_the_ceiling() {
    use memwall_tiers::clients::expert::{synthetic_trace, SyntheticSpec};
    let path = std::env::temp_dir().join(format!("memwall-sim-test-{}.trace", std::process::id()));
    let spec =
        SyntheticSpec { layers: 4, experts: 16, top_k: 2, tokens: 4, steps: 50, skew: 1.2, accuracy: 0.7, seed: 3 };
    synthetic_trace(&spec).save(&path).unwrap();
    let out = memwall().args(["simulate-experts", "--capacity", "4,16"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // Cells are "hit% / stall-free%".
    let cell = |c: &str| -> Option<(f64, f64)> {
        let (hit, free) = c.split_once('/')?;
        Some((hit.trim().trim_end_matches('%').parse().ok()?, free.trim().trim_end_matches('%').parse().ok()?))
    };
    let rows: Vec<Vec<(f64, f64)>> = text
        .lines()
        .filter(|l| l.starts_with("| 4 ") || l.starts_with("| 16 "))
        .map(|l| l.split('|').skip(2).filter_map(cell).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for r in rows {
        assert_eq!(r.len(), 4, "{text}");
        assert!(r[..3].iter().all(|&(hit, _)| hit <= r[3].0 + 1e-9), "Belady is not the ceiling: {r:?}");
        // Demand-only policies find resident exactly what they hit; the
        // prefetching one finds at least as many resident as it hits.
        for i in [0, 1, 3] {
            assert!((r[i].0 - r[i].1).abs() < 1e-9, "{r:?}");
        }
        assert!(r[2].1 >= r[2].0, "{r:?}");
    }
    let _ = std::fs::remove_file(path);
}

/// The demo on a GPU: the kernels (decode attention over the KV pool in
/// HBM, MoE++ routing, the expert FFN, combine) with experts paged
/// HBM <- DDR <- NVMe, against a non-paged GPU run. Without a GPU,
/// `--device gpu` is a clear error (and the GPU run skips).
#[test]
fn gpu_demo_runs_the_kernels_and_matches_the_non_paged_run() {
    if !memwall::gpu::driver_present() {
        let out = memwall().args(["demo", "--device", "gpu"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--device gpu: no CUDA driver"), "{err}");
    }
    let Some(_gpu) = memwall::gpu::gpu_or_skip("gpu_demo_runs_the_kernels_and_matches_the_non_paged_run") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("memwall-gpu-demo-test-{}", std::process::id()));
    let out = memwall()
        .args(["demo", "--device", "gpu", "--layers", "3", "--experts", "20", "--tokens", "8", "--sequences", "3"])
        .args(["--active", "2", "--swap-every", "2", "--hbm-experts", "6", "--ddr-experts", "10", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("compute: GPU"), "{text}");
    assert!(text.contains("| check | identical tokens to the non-paged run |"), "{text}");
    let hbm = text.lines().find(|l| l.starts_with("| Hbm:")).expect("an HBM row");
    assert!(!hbm.contains("/ 0 ("), "expected HBM misses (experts paged in): {hbm}");
    let _ = std::fs::remove_dir_all(dir);
}
