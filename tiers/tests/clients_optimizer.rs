//! The optimizer offload: equal to an in-memory AdamW over random
//! step/reopen sequences, an exact restart, clear errors for corrupt or
//! missing state, and injected ENOSPC/EIO during a step that lose nothing.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use memwall_tiers::clients::optimizer::{AdamW, AdamWReference, OffloadSettings, OptimizerOffload};
use memwall_tiers::clients::ClientError;
use memwall_tiers::config::IoEngineChoice;
use memwall_tiers::nvme::{Fault, IoOp};
use memwall_tiers::{Config, TierError};
use proptest::prelude::*;

const N: usize = 20_000;
const PART: usize = 2048; // 24 KiB a partition, 10 partitions
const HYPER: AdamW = AdamW { lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.05 };

/// A pager config whose DDR holds 6 of the 10 partitions, so steps read
/// from NVMe too.
fn pager_config(io: IoEngineChoice) -> Config {
    let (mut c, dir) = common::config(6 * 24_576, 1 << 26);
    c.nvme.io = io;
    // The offload puts its data file in its own folder.
    drop(dir);
    c
}

fn settings(io: IoEngineChoice) -> OffloadSettings {
    let mut s = OffloadSettings::new(pager_config(io), PART);
    s.adamw = HYPER;
    s.threads = 3;
    s
}

fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-6 * w.abs().max(1e-3);
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w}");
    }
}

fn assert_matches(opt: &OptimizerOffload, reference: &AdamWReference) {
    assert_eq!(opt.steps(), reference.step);
    assert_close("master", &opt.master().unwrap(), &reference.params);
    let (m, v) = opt.moments().unwrap();
    assert_close("m", &m, &reference.m);
    assert_close("v", &v, &reference.v);
}

#[test]
fn adamw_first_step_by_hand() {
    // p 1, g 0.5, lr 0.1, wd 0.01: decay to 0.999; m 0.05, v 0.00025;
    // step size lr / 0.1 = 1; denom sqrt(0.00025) / sqrt(0.001) = 0.5;
    // p = 0.999 - 0.05 / 0.5 = 0.899 (Adam's first step is lr * sign(g)).
    let hyper = AdamW { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
    let mut r = AdamWReference::new(hyper, vec![1.0]);
    r.step(&[0.5]);
    assert!((r.params[0] - 0.899).abs() < 1e-6, "{}", r.params[0]);
    // f32: 1 - 0.999 is 0.00100005, so v is off by 5e-5 relative.
    assert!((r.m[0] - 0.05).abs() < 1e-7 && (r.v[0] / 0.00025 - 1.0).abs() < 1e-4, "{} {}", r.m[0], r.v[0]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(IoEngineChoice::Auto);
    s.adamw = hyper;
    let mut opt = OptimizerOffload::create(dir.path(), s, &[1.0]).unwrap();
    let mut p = [0f32];
    opt.step(&[0.5], &mut p).unwrap();
    assert_eq!(p[0], r.params[0]);
    assert_matches(&opt, &r);
}

#[test]
fn steps_equal_in_memory_adamw_and_report_their_parts() {
    let dir = tempfile::tempdir().unwrap();
    let params = values(1, N, 2.0);
    let mut opt = OptimizerOffload::create(dir.path(), settings(IoEngineChoice::Auto), &params).unwrap();
    assert_eq!((opt.len(), opt.partitions(), opt.steps()), (N, 10, 0));
    let mut reference = AdamWReference::new(HYPER, params.clone());
    let mut out = vec![0f32; N];
    for step in 1..=4u64 {
        let grads = values(100 + step, N, 1.0);
        let report = opt.step(&grads, &mut out).unwrap();
        reference.step(&grads);
        assert_eq!(report.step, step);
        assert_eq!(report.state_bytes, 12 * N as u64);
        assert!(report.elapsed >= report.compute && report.compute > std::time::Duration::ZERO);
        assert_close("params out", &out, &reference.params);
    }
    assert_matches(&opt, &reference);
    let nvme = opt.pager().stats();
    assert!(nvme.tier(memwall_tiers::Tier::Nvme).bytes_out > 0, "partitions were read back from NVMe");
    // Bad lengths change nothing.
    let e = opt.step(&out[1..], &mut out.clone()).unwrap_err();
    assert!(matches!(e, ClientError::Length { what: "grads", got, expected: N } if got == N - 1), "{e}");
    assert_eq!(opt.steps(), 4);
}

#[derive(Debug, Clone)]
enum Op {
    Step(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![3 => any::<u64>().prop_map(Op::Step), 1 => Just(Op::Reopen)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn random_steps_and_restarts_match_the_model(ops in proptest::collection::vec(op(), 1..7), n in 1usize..7000) {
        let dir = tempfile::tempdir().unwrap();
        let params = values(n as u64, n, 1.0);
        let mut opt = Some(OptimizerOffload::create(dir.path(), settings(IoEngineChoice::Auto), &params).unwrap());
        let mut reference = AdamWReference::new(HYPER, params);
        let mut out = vec![0f32; n];
        for op in ops {
            match op {
                Op::Step(seed) => {
                    let grads = values(seed, n, 1.0);
                    opt.as_mut().unwrap().step(&grads, &mut out).unwrap();
                    reference.step(&grads);
                    prop_assert_eq!(&out, &reference.params);
                }
                Op::Reopen => {
                    drop(opt.take());
                    opt = Some(OptimizerOffload::open(dir.path(), pager_config(IoEngineChoice::Auto)).unwrap().with_threads(2));
                }
            }
            let o = opt.as_ref().unwrap();
            prop_assert_eq!(o.steps(), reference.step);
            prop_assert_eq!(o.master().unwrap(), reference.params.clone());
        }
    }
}

#[test]
fn a_restart_continues_exactly_as_an_uninterrupted_run() {
    let params = values(3, N, 1.0);
    let grads: Vec<Vec<f32>> = (0..6).map(|s| values(50 + s, N, 0.5)).collect();
    let mut out = vec![0f32; N];
    let whole = tempfile::tempdir().unwrap();
    let mut a = OptimizerOffload::create(whole.path(), settings(IoEngineChoice::Auto), &params).unwrap();
    for g in &grads {
        a.step(g, &mut out).unwrap();
    }
    let split = tempfile::tempdir().unwrap();
    {
        let mut b = OptimizerOffload::create(split.path(), settings(IoEngineChoice::Pread), &params).unwrap();
        for g in &grads[..3] {
            b.step(g, &mut out).unwrap();
        }
    }
    let e = OptimizerOffload::create(split.path(), settings(IoEngineChoice::Auto), &params).unwrap_err();
    assert!(matches!(e, ClientError::StateExists { .. }), "{e}");
    let mut b = OptimizerOffload::open(split.path(), pager_config(IoEngineChoice::Auto)).unwrap();
    assert_eq!((b.steps(), b.adamw(), b.len()), (3, HYPER, N));
    for g in &grads[3..] {
        b.step(g, &mut out).unwrap();
    }
    assert_eq!(b.master().unwrap(), a.master().unwrap(), "bit-identical to the uninterrupted run");
    assert_eq!(b.moments().unwrap(), a.moments().unwrap());
    assert_eq!(out, a.master().unwrap());
}

/// `(offset, len)` of partition `i` from the manifest's text.
fn extent_of(dir: &Path, i: usize) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join("manifest")).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("part {i} "))).unwrap();
    let w: Vec<&str> = line.split_whitespace().collect();
    (w[2].parse().unwrap(), w[3].parse().unwrap())
}

/// Rewrites the manifest with `edit` applied and a valid checksum.
fn rewrite_manifest(dir: &Path, edit: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(dir.join("manifest")).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("crc ")).map(|l| format!("{}\n", edit(l))).collect();
    let crc = crc32fast::hash(body.as_bytes());
    std::fs::write(dir.join("manifest"), format!("{body}crc {crc:08x}\n")).unwrap();
}

#[test]
fn corrupt_or_missing_state_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let params = values(4, N, 1.0);
    {
        let mut opt = OptimizerOffload::create(dir.path(), settings(IoEngineChoice::Auto), &params).unwrap();
        opt.step(&values(5, N, 1.0), &mut vec![0f32; N]).unwrap();
    }
    let d = dir.path();
    let data = d.join("state.data");
    let manifest = std::fs::read(d.join("manifest")).unwrap();
    let open = || OptimizerOffload::open(d, pager_config(IoEngineChoice::Auto)).unwrap_err();

    // A flipped byte in partition 3's data: the block checksum catches it.
    let (offset, _) = extent_of(d, 3);
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&data).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset + 100).unwrap();
    f.write_all_at(&[b[0] ^ 1], offset + 100).unwrap();
    let e = open();
    assert!(matches!(&e, ClientError::Partition { partition: 3, step: 1, .. }), "{e}");
    assert!(matches!(e.tier_error(), Some(TierError::Checksum { .. })), "{e}");
    assert!(e.to_string().contains("state.data") && e.to_string().contains("checksum"), "{e}");
    f.write_all_at(&b, offset + 100).unwrap();
    OptimizerOffload::open(d, pager_config(IoEngineChoice::Auto)).unwrap();

    // The manifest's own checksum.
    let mut bad = manifest.clone();
    let at = bad.iter().position(|&c| c == b'\n').unwrap() + 10;
    bad[at] ^= 1;
    std::fs::write(d.join("manifest"), &bad).unwrap();
    assert!(matches!(open(), ClientError::ManifestChecksum { .. }));

    // A consistent manifest whose object checksum disagrees with the data.
    std::fs::write(d.join("manifest"), &manifest).unwrap();
    rewrite_manifest(d, |l| {
        if l.starts_with("part 2 ") {
            let mut w: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            w[4] = format!("{:08x}", u32::from_str_radix(&w[4], 16).unwrap() ^ 1);
            w.join(" ")
        } else {
            l.to_string()
        }
    });
    let e = open();
    assert!(matches!(e, ClientError::StateChecksum { partition: 2, step: 1, .. }), "{e}");
    assert!(e.to_string().contains("partition 2"), "{e}");

    // A manifest line that does not parse names the line.
    std::fs::write(d.join("manifest"), &manifest).unwrap();
    rewrite_manifest(d, |l| if l.starts_with("step ") { "step one".into() } else { l.to_string() });
    assert!(matches!(open(), ClientError::Manifest { line: 4, .. }));

    // A truncated data file.
    std::fs::write(d.join("manifest"), &manifest).unwrap();
    let (offset, len) = extent_of(d, 9);
    f.set_len(offset + len - 4096).unwrap();
    let e = open();
    assert!(matches!(&e, ClientError::Manifest { .. }) && e.to_string().contains("the manifest needs"), "{e}");

    // No manifest at all.
    std::fs::remove_file(d.join("manifest")).unwrap();
    assert!(matches!(open(), ClientError::Io { op: "read", .. }));
}

#[test]
fn faults_during_a_step_lose_no_state() {
    for (path, io) in common::io_paths() {
        let dir = tempfile::tempdir().unwrap();
        let params = values(6, N, 1.0);
        let mut s = settings(io);
        let faults = s.pager.nvme.faults.clone();
        s.threads = 2;
        let mut opt = OptimizerOffload::create(dir.path(), s, &params).unwrap();
        let mut reference = AdamWReference::new(HYPER, params);
        let mut out = vec![0f32; N];
        let g1 = values(7, N, 1.0);
        opt.step(&g1, &mut out).unwrap();
        reference.step(&g1);
        let g2 = values(8, N, 1.0);
        for (op, fault, errno) in [(IoOp::Write, Fault::NoSpace, libc::ENOSPC), (IoOp::Read, Fault::Eio, libc::EIO)] {
            // Fail one request in the middle of the step's traffic.
            faults.inject_after(op, fault, 5, 1);
            let e = opt.step(&g2, &mut out).unwrap_err();
            assert!(matches!(&e, ClientError::Partition { step: 2, .. }), "{path} {fault:?}: {e}");
            assert_eq!(e.os_error(), Some(errno), "{path} {fault:?}: {e}");
            assert!(!faults.is_armed(), "{path} {fault:?}: the fault hit");
            // Nothing changed, in memory and on disk.
            assert_matches(&opt, &reference);
            let reopened = OptimizerOffload::open(dir.path(), pager_config(io)).unwrap();
            assert_matches(&reopened, &reference);
            drop(reopened);
        }
        // The pager's objects: one generation only (no leftovers).
        assert_eq!(opt.pager().stats().objects, opt.partitions());
        opt.step(&g2, &mut out).unwrap();
        reference.step(&g2);
        assert_matches(&opt, &reference);
        // A crash right after a failed step restarts from the last commit.
        faults.inject_after(IoOp::Write, Fault::Eio, 3, 1);
        assert!(opt.step(&values(9, N, 1.0), &mut out).is_err());
        drop(opt);
        let mut opt = OptimizerOffload::open(dir.path(), pager_config(io)).unwrap();
        assert_matches(&opt, &reference);
        let g3 = values(9, N, 1.0);
        opt.step(&g3, &mut out).unwrap();
        reference.step(&g3);
        assert_matches(&opt, &reference);
    }
}

#[test]
fn settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(IoEngineChoice::Auto);
    s.adamw.beta1 = 1.0;
    assert!(matches!(
        OptimizerOffload::create(dir.path(), s, &[1.0]).unwrap_err(),
        ClientError::Invalid { what: "beta1", .. }
    ));
    let mut s = settings(IoEngineChoice::Auto);
    s.partition_elems = 1 << 20;
    let e = OptimizerOffload::create(dir.path(), s, &vec![0.0; 1 << 20]).unwrap_err();
    assert!(matches!(&e, ClientError::Invalid { what: "ddr.capacity", .. }), "{e}");
    assert!(e.to_string().contains("6 partitions"), "{e}");
    assert!(OptimizerOffload::create(dir.path(), settings(IoEngineChoice::Auto), &[]).is_err());
}
