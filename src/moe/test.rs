use half::{bf16, f16};

use super::*;
use crate::dtype::Element;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * scale).collect()
    }
}

fn layout(n: u32) -> ExpertLayout {
    ExpertLayout::paper(n).unwrap_or(ExpertLayout { n_ffn: n - 8, n_const: 4, n_copy: 2, n_zero: 2 })
}

/// Random inputs for T tokens, N experts, hidden D.
struct Case {
    t: u32,
    d: u32,
    logits: Vec<f32>,
    prev: Vec<f32>,
    wg: Vec<f32>,
    x: Vec<f32>,
    wc: Vec<f32>,
    v: Vec<f32>,
}

impl Case {
    fn new(cfg: &MoeConfig, t: u32, d: u32, seed: u64) -> Self {
        let mut r = Rng(seed);
        let n = cfg.layout.experts() as usize;
        let nc = cfg.layout.n_const as usize;
        Case {
            t,
            d,
            logits: r.vec(t as usize * n, 3.0),
            prev: r.vec(t as usize * n, 2.0),
            wg: r.vec(n * n, 0.3),
            x: r.vec(t as usize * d as usize, 1.0),
            wc: r.vec(nc * 2 * d as usize, 0.5),
            v: r.vec(nc * d as usize, 1.0),
        }
    }

    fn inputs<'a, L: Element>(&'a self, logits: &'a [L], residual: bool) -> GateInputs<'a, L, f32> {
        GateInputs {
            tokens: self.t,
            hidden: self.d,
            logits,
            residual: residual.then_some(Residual { prev_logits: &self.prev, wg: &self.wg }),
            x: &self.x,
            wc: &self.wc,
        }
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-3)
}

fn check_against_reference(cfg: &MoeConfig, got: &Routing, want: &reference::RoutingF64, what: &str) {
    assert_eq!(got.ids, want.ids, "{what}: top-k ids");
    for (i, (g, w)) in got.weights.iter().zip(&want.weights).enumerate() {
        assert!(close(f64::from(*g), *w, 2e-5), "{what}: weight {i}: {g} vs {w}");
    }
    for (i, (g, w)) in got.probs.iter().zip(&want.probs).enumerate() {
        assert!((f64::from(*g) - w).abs() <= 2e-6, "{what}: prob {i}: {g} vs {w}");
    }
    // Next logits are sums of N products of magnitude ~1 that may cancel:
    // bound the error by f32 rounding of the summands, not the result.
    let n_f = cfg.layout.experts() as f64;
    for (i, (g, w)) in got.next_logits.iter().zip(&want.next_logits).enumerate() {
        assert!((f64::from(*g) - w).abs() <= 1e-6 * (4.0 + n_f), "{what}: next logit {i}: {g} vs {w}");
    }
    for (i, (g, w)) in got.alpha.iter().zip(&want.alpha).enumerate() {
        assert!((f64::from(*g) - w).abs() <= 1e-5, "{what}: alpha {i}: {g} vs {w}");
    }
    let n = cfg.layout.experts() as usize;
    for e in 0..n {
        assert!((f64::from(got.stats.f[e]) - want.f[e]).abs() <= 1e-6, "{what}: f[{e}]");
        assert!((f64::from(got.stats.p[e]) - want.p[e]).abs() <= 1e-5, "{what}: P[{e}]");
    }
    assert!(close(f64::from(got.stats.lb), want.lb, 1e-4), "{what}: L_b {} vs {}", got.stats.lb, want.lb);
}

#[test]
fn cpu_routing_matches_the_f64_reference() {
    for n in [12u32, 20, 40, 256] {
        for k in [1u32, 2, 8] {
            for renorm in [Renorm::ReferenceCode, Renorm::Paper] {
                for (residual, norm) in [(false, None), (true, None), (true, Some(1.0f32))] {
                    let cfg = MoeConfig { top_k: k, renorm, logits_norm_std: norm, ..MoeConfig::new(layout(n)) };
                    let case = Case::new(&cfg, 37, 24, u64::from(n * 31 + k));
                    let inputs = case.inputs(&case.logits, residual);
                    let got = route(&cfg, &inputs).unwrap();
                    let want = reference::route(&cfg, &inputs).unwrap();
                    check_against_reference(
                        &cfg,
                        &got,
                        &want,
                        &format!("N={n} k={k} {renorm:?} res={residual} norm={norm:?}"),
                    );
                }
            }
        }
    }
}

#[test]
fn half_precision_logits_are_computed_in_f32() {
    let cfg = MoeConfig::new(layout(20));
    let case = Case::new(&cfg, 16, 8, 5);
    let h: Vec<f16> = case.logits.iter().map(|&v| f16::from_f32(v)).collect();
    let b: Vec<bf16> = case.logits.iter().map(|&v| bf16::from_f32(v)).collect();
    check_against_reference(
        &cfg,
        &route(&cfg, &case.inputs(&h, true)).unwrap(),
        &reference::route(&cfg, &case.inputs(&h, true)).unwrap(),
        "f16",
    );
    check_against_reference(
        &cfg,
        &route(&cfg, &case.inputs(&b, true)).unwrap(),
        &reference::route(&cfg, &case.inputs(&b, true)).unwrap(),
        "bf16",
    );
}

#[test]
fn ties_go_to_the_lower_index_and_nan_ranks_last() {
    let cfg = MoeConfig { top_k: 3, ..MoeConfig::new(layout(12)) };
    let case = Case::new(&cfg, 2, 4, 9);
    let mut logits = vec![0.0f32; 24];
    // Token 0: experts 7, 3 and 9 tie at the top; 3 and 7 come first.
    logits[3] = 2.0;
    logits[7] = 2.0;
    logits[9] = 2.0;
    // Token 1: NaN in expert 0 ranks last; expert 5 wins.
    logits[12] = f32::NAN;
    logits[12 + 5] = 1.0;
    let r = route(&cfg, &case.inputs(&logits, false)).unwrap();
    assert_eq!(&r.ids[..3], &[3, 7, 9]);
    assert_eq!(r.ids[3], 5);
    assert!(!r.ids[3..].contains(&0), "NaN expert chosen: {:?}", &r.ids[3..]);
    assert_eq!(r.probs[12], 0.0);
    assert!(r.next_logits[12].is_nan(), "the raw logit passed on keeps its NaN");
    let w = reference::route(&cfg, &case.inputs(&logits, false)).unwrap();
    assert_eq!(r.ids, w.ids);
}

#[test]
fn zero_expert_gate_is_zeroed_then_renormalized() {
    let cfg = MoeConfig::new(layout(12)); // zero expert is 11
    let case = Case::new(&cfg, 1, 4, 3);
    let mut logits = vec![-5.0f32; 12];
    logits[11] = 3.0;
    logits[2] = 2.0;
    let r = route(&cfg, &case.inputs(&logits, false)).unwrap();
    assert_eq!(r.ids, vec![11, 2]);
    assert_eq!(r.weights, vec![0.0, 1.0], "the other expert takes all the weight");
    let paper = MoeConfig { renorm: Renorm::Paper, ..cfg };
    let r = route(&paper, &case.inputs(&logits, false)).unwrap();
    assert!((r.weights[0] - r.probs[11]).abs() < 1e-7 && (r.weights[1] - r.probs[2]).abs() < 1e-7);
}

#[test]
fn bad_configs_and_shapes_are_errors() {
    let mut cfg = MoeConfig::new(layout(12));
    cfg.top_k = 13;
    assert!(cfg.validate().unwrap_err().to_string().contains("top_k = 13"));
    cfg.top_k = 9;
    assert!(cfg.validate().is_err(), "k > 8");
    let copy_only = MoeConfig::new(ExpertLayout { n_ffn: 0, n_const: 0, n_copy: 4, n_zero: 0 });
    assert!(copy_only.validate().unwrap_err().to_string().contains("n_ffn = 0"));
    let big = MoeConfig::new(ExpertLayout { n_ffn: 300, n_const: 0, n_copy: 0, n_zero: 0 });
    assert!(big.validate().unwrap_err().to_string().contains("experts = 300"));
    let cfg = MoeConfig::new(layout(12));
    let case = Case::new(&cfg, 4, 8, 1);
    let mut inputs = case.inputs(&case.logits, true);
    inputs.tokens = 5;
    assert!(route(&cfg, &inputs).unwrap_err().to_string().contains("logits"));
    let mut inputs = case.inputs(&case.logits, true);
    let short = &case.wg[1..];
    inputs.residual = Some(Residual { prev_logits: &case.prev, wg: short });
    assert!(route(&cfg, &inputs).unwrap_err().to_string().contains("wg = 143 elements"));
    assert!(plans(&cfg, 0, 8, crate::dtype::Dtype::F32, crate::dtype::Dtype::F32, false).is_err());
}

#[test]
fn capacities_follow_eq_8() {
    let cfg = MoeConfig { capacity_factor: Some(1.1), tau: 0.75, ..MoeConfig::new(layout(20)) };
    // tau N_FFN + N_ZC = 0.75 * 16 + 4 = 16.
    let (c_ffn, c_zc) = cfg.capacities(1600).unwrap();
    assert_eq!(c_ffn, (1.1f64 * 0.75 * 1600.0 / 16.0).ceil() as u32);
    assert_eq!(c_zc, (1.1f64 * 1600.0 / 16.0).ceil() as u32);
    assert_eq!(MoeConfig::new(layout(20)).capacities(100), None);
}

fn check_dispatch(cfg: &MoeConfig, r: &Routing, d: &Dispatch, tokens: u32) {
    let k = cfg.top_k as usize;
    let nf = cfg.layout.n_ffn as usize;
    let cap = cfg.ffn_capacity(tokens) as usize;
    for e in 0..nf {
        let rows = &d.sorted_tokens[d.expert_offsets[e] as usize..d.expert_offsets[e + 1] as usize];
        let want: Vec<i32> =
            (0..r.ids.len()).filter(|&a| r.ids[a] == e as i32).map(|a| (a / k) as i32).take(cap).collect();
        assert_eq!(&rows[..want.len()], &want[..], "expert {e} rows in token order");
        assert!(rows[want.len()..].iter().all(|&t| t == -1), "padding");
        assert_eq!(rows.len() % cfg.pad_to as usize, 0);
        assert_eq!(d.expert_counts[e] as usize, want.len());
    }
    for (a, &row) in d.slot_rows.iter().enumerate() {
        if row >= 0 {
            assert_eq!(d.sorted_tokens[row as usize], (a / k) as i32);
            assert!((r.ids[a] as u32) < cfg.layout.n_ffn);
        } else {
            assert!(r.ids[a] as u32 >= cfg.layout.n_ffn || d.expert_counts[r.ids[a] as usize] as usize == cap);
        }
    }
}

#[test]
fn dispatch_groups_by_expert_in_token_order_with_capacity() {
    for cap in [None, Some(0.5f32)] {
        let cfg = MoeConfig { capacity_factor: cap, pad_to: 8, ..MoeConfig::new(layout(20)) };
        let case = Case::new(&cfg, 300, 4, 77);
        let r = route(&cfg, &case.inputs(&case.logits, true)).unwrap();
        let d = dispatch(&cfg, &r, 300);
        check_dispatch(&cfg, &r, &d, 300);
        assert!(d.expert_offsets[cfg.layout.n_ffn as usize] as u64 <= cfg.max_rows(300));
    }
}

/// A stand-in FFN: expert `e`'s output for token `t` is `x[t] * (e + 1) / 8`.
fn ffn_rows(cfg: &MoeConfig, d: &Dispatch, x: &[f32], hidden: usize) -> Vec<f32> {
    let mut out = vec![0f32; cfg.max_rows(d.slot_rows.len() as u32).max(1) as usize * hidden];
    for e in 0..cfg.layout.n_ffn as usize {
        for row in d.expert_offsets[e] as usize..d.expert_offsets[e + 1] as usize {
            let t = d.sorted_tokens[row];
            if t >= 0 {
                for i in 0..hidden {
                    out[row * hidden + i] = x[t as usize * hidden + i] * (e as f32 + 1.0) / 8.0;
                }
            }
        }
    }
    out
}

#[test]
fn combine_matches_the_reference() {
    for cap in [None, Some(0.6f32)] {
        let cfg = MoeConfig { capacity_factor: cap, ..MoeConfig::new(layout(20)) };
        let (t, hidden) = (64u32, 32usize);
        let case = Case::new(&cfg, t, hidden as u32, 11);
        let inputs = case.inputs(&case.logits, true);
        let r = route(&cfg, &inputs).unwrap();
        let d = dispatch(&cfg, &r, t);
        let rows = ffn_rows(&cfg, &d, &case.x, hidden);
        let mut out = vec![0f32; t as usize * hidden];
        combine(
            &cfg,
            &r,
            &d,
            &CombineInputs { x: &case.x, expert_out: &rows, v: &case.v, hidden: hidden as u32 },
            &mut out,
        )
        .unwrap();
        let rf = reference::route(&cfg, &inputs).unwrap();
        let k = cfg.top_k as usize;
        let want = reference::combine(
            &cfg,
            &rf,
            &case.x,
            &case.v,
            hidden as u32,
            |tok, s| d.slot_rows[tok * k + s] >= 0,
            |tok, e, i| f64::from(case.x[tok * hidden + i]) * (e as f64 + 1.0) / 8.0,
        );
        for (i, (g, w)) in out.iter().zip(&want).enumerate() {
            assert!((f64::from(*g) - w).abs() <= 1e-5, "cap {cap:?} out[{i}] = {g}, want {w}");
        }
    }
}

#[cfg(feature = "emu")]
#[test]
fn emulated_kernels_match_the_cpu_path() {
    let emu = crate::emu::Emulator::new();
    // All 256 experts FFN: n_ffn + 1 offsets, one more than the scan's block.
    let all_ffn = ExpertLayout { n_ffn: 256, n_const: 0, n_copy: 0, n_zero: 0 };
    for (experts, k, renorm, cap, t) in [
        (layout(12), 2u32, Renorm::ReferenceCode, None, 300u32),
        (layout(20), 1, Renorm::Paper, Some(0.7f32), 513),
        (layout(40), 8, Renorm::ReferenceCode, Some(1.0), 97),
        (layout(256), 2, Renorm::ReferenceCode, None, 40),
        (all_ffn, 2, Renorm::Paper, None, 600),
    ] {
        let n = experts.experts();
        let cfg =
            MoeConfig { top_k: k, renorm, capacity_factor: cap, logits_norm_std: Some(1.0), ..MoeConfig::new(experts) };
        let hidden = 48u32;
        let case = Case::new(&cfg, t, hidden, u64::from(n + k));
        let inputs = case.inputs(&case.logits, true);
        let cpu = route(&cfg, &inputs).unwrap();
        let cpu_d = dispatch(&cfg, &cpu, t);
        let (er, ed) = route_and_dispatch_emu(&emu, &cfg, &inputs).unwrap();
        let what = format!("N={n} (FFN {}) k={k}", experts.n_ffn);
        assert_eq!(er.ids, cpu.ids, "{what}");
        for (a, b) in er.weights.iter().zip(&cpu.weights) {
            assert!((a - b).abs() <= 1e-6, "{what}: weights {a} vs {b}");
        }
        for (a, b) in er.next_logits.iter().zip(&cpu.next_logits) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{what}: next logits {a} vs {b}");
        }
        for (a, b) in er.alpha.iter().zip(&cpu.alpha) {
            assert!((a - b).abs() <= 1e-6, "{what}: alpha {a} vs {b}");
        }
        assert_eq!(er.stats.f, cpu.stats.f, "{what}: f");
        assert!((er.stats.lb - cpu.stats.lb).abs() <= 1e-5, "{what}: L_b");
        assert_eq!(ed, cpu_d, "{what}: dispatch");

        let rows = ffn_rows(&cfg, &cpu_d, &case.x, hidden as usize);
        let (mut a, mut b) = (vec![0f32; (t * hidden) as usize], vec![0f32; (t * hidden) as usize]);
        let ci = CombineInputs { x: &case.x, expert_out: &rows, v: &case.v, hidden };
        combine(&cfg, &cpu, &cpu_d, &ci, &mut a).unwrap();
        combine_emu(&emu, &cfg, &cpu, &cpu_d, &ci, &mut b).unwrap();
        assert_eq!(a, b, "{what}: combine is bit-identical");
    }
}

#[cfg(feature = "emu")]
#[test]
fn emulated_routing_is_deterministic_across_workers_and_dtypes() {
    let cfg = MoeConfig::new(layout(20));
    let case = Case::new(&cfg, 700, 16, 4);
    let b: Vec<bf16> = case.logits.iter().map(|&v| bf16::from_f32(v)).collect();
    let x16: Vec<f16> = case.x.iter().map(|&v| f16::from_f32(v)).collect();
    let inputs = GateInputs {
        tokens: case.t,
        hidden: case.d,
        logits: &b[..],
        residual: Some(Residual { prev_logits: &case.prev, wg: &case.wg }),
        x: &x16[..],
        wc: &case.wc,
    };
    let one = route_and_dispatch_emu(&crate::emu::Emulator::with_workers(1), &cfg, &inputs).unwrap();
    let many = route_and_dispatch_emu(&crate::emu::Emulator::with_workers(3), &cfg, &inputs).unwrap();
    assert_eq!(one, many);
    let cpu = route(&cfg, &inputs).unwrap();
    assert_eq!(one.0.ids, cpu.ids);
}

/// The FFN experts of a real dispatch: every expert's rows through
/// [`expert_ffn`] (CPU) and [`expert_ffn_emu`] (the kernels) agree to
/// rounding; padding rows are zero; rows of other experts stay untouched;
/// the result, through combine, matches an f64 evaluation.
#[cfg(feature = "emu")]
#[test]
fn emulated_expert_ffn_matches_the_cpu_path() {
    let emu = crate::emu::Emulator::new();
    for (n, t, hidden, ffn, pad) in [(20u32, 7u32, 64u32, 96u32, 4u32), (12, 33, 40, 70, 1), (40, 3, 33, 17, 8)] {
        let cfg = MoeConfig { pad_to: pad, ..MoeConfig::new(layout(n)) };
        let case = Case::new(&cfg, t, hidden, u64::from(n * 7 + t));
        let inputs = case.inputs(&case.logits, false);
        let r = route(&cfg, &inputs).unwrap();
        let d = dispatch(&cfg, &r, t);
        let total = *d.expert_offsets.last().unwrap();
        let mut rng = Rng(u64::from(hidden) * 31 + 5);
        let mut cpu = vec![7.0f32; (total * hidden) as usize];
        let mut emu_out = cpu.clone();
        for e in 0..cfg.layout.n_ffn as usize {
            let w = rng.vec(2 * (hidden * ffn) as usize, 0.2);
            let (row0, row1) = (d.expert_offsets[e], d.expert_offsets[e + 1]);
            let s = FfnShape { tokens: t, hidden, ffn, total_rows: total, row0, rows: row1 - row0 };
            expert_ffn(&s, &w, &case.x, &d.sorted_tokens, &mut cpu).unwrap();
            expert_ffn_emu(&emu, &s, &w, &case.x, &d.sorted_tokens, &mut emu_out).unwrap();
            // f64 check of each real row.
            let (w1, w2) = w.split_at((ffn * hidden) as usize);
            for row in row0..row1 {
                let tok = d.sorted_tokens[row as usize];
                let got = &cpu[(row * hidden) as usize..((row + 1) * hidden) as usize];
                if tok < 0 {
                    assert!(got.iter().all(|&v| v == 0.0), "padding row {row} not zeroed");
                    continue;
                }
                let x = &case.x[(tok as u32 * hidden) as usize..((tok as u32 + 1) * hidden) as usize];
                let hid: Vec<f64> = (0..ffn as usize)
                    .map(|j| {
                        let s: f64 = (0..hidden as usize)
                            .map(|i| f64::from(w1[j * hidden as usize + i]) * f64::from(x[i]))
                            .sum();
                        s.max(0.0)
                    })
                    .collect();
                for (j, &g) in got.iter().enumerate() {
                    let want: f64 = (0..ffn as usize).map(|i| f64::from(w2[j * ffn as usize + i]) * hid[i]).sum();
                    assert!(
                        (f64::from(g) - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "row {row} out[{j}] {g} vs {want}"
                    );
                }
            }
        }
        for (i, (a, b)) in cpu.iter().zip(&emu_out).enumerate() {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "N={n} T={t}: expert_out[{i}] cpu {a} vs emulator {b}");
        }
        assert!(cpu.iter().all(|&v| v != 7.0), "every row of the dispatch was written");
    }
}

#[cfg(feature = "emu")]
#[test]
fn expert_ffn_rejects_bad_shapes_and_tokens() {
    let emu = crate::emu::Emulator::new();
    let s = FfnShape { tokens: 2, hidden: 4, ffn: 3, total_rows: 4, row0: 1, rows: 2 };
    let w = vec![0.5f32; 24];
    let x = vec![1f32; 8];
    let mut out = vec![0f32; 16];
    let e = |r: Result<()>| r.unwrap_err().to_string();
    assert!(e(expert_ffn(&s, &w[..23], &x, &[0, 1, 1, -1], &mut out)).contains("weights"));
    assert!(e(expert_ffn(&s, &w, &x, &[0, 1, 2, -1], &mut out)).contains("sorted_tokens"));
    assert!(e(expert_ffn_emu(&emu, &s, &w, &x, &[0, 1, 9, -1], &mut out)).contains("9"));
    let bad = FfnShape { rows: 4, ..s };
    assert!(e(expert_ffn(&bad, &w, &x, &[0, 1, 1, -1], &mut out)).contains("row0 + rows"));
    let zero = FfnShape { ffn: 0, ..s };
    assert!(e(expert_ffn(&zero, &[], &x, &[0, 1, 1, -1], &mut out)).contains("ffn"));
    assert!(e(expert_ffn(&s, &w, &x, &[0, 1, 1, -1], &mut out[..15])).contains("expert_out"));
    // No rows: nothing happens.
    let none = FfnShape { rows: 0, ..s };
    expert_ffn_emu(&emu, &none, &w, &x, &[0, 1, 1, -1], &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 0.0));
}
