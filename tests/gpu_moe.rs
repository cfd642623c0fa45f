//! MoE++ routing, dispatch and combine on a real GPU against the CPU path.
//! Skips without a driver (fails under MEMWALL_REQUIRE_GPU=1).

use half::bf16;
use memwall::gpu::gpu_or_skip;
use memwall::moe::*;

fn rng(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
        })
        .collect()
}

#[test]
fn gpu_moe_matches_cpu() {
    let Some(gpu) = gpu_or_skip("gpu_moe_matches_cpu") else { return };
    let stream = gpu.new_stream().unwrap();
    for (n, k, t, cap) in
        [(20u32, 2u32, 4096u32, None), (40, 8, 1000, Some(0.8f32)), (256, 2, 300, None), (12, 1, 7, None)]
    {
        let layout = ExpertLayout::paper(n).unwrap_or(ExpertLayout { n_ffn: n - 8, n_const: 4, n_copy: 2, n_zero: 2 });
        let cfg = MoeConfig { top_k: k, capacity_factor: cap, ..MoeConfig::new(layout) };
        let d = 256u32;
        let (tn, td) = ((t * n) as usize, (t * d) as usize);
        let logits: Vec<bf16> = rng(1, tn, 3.0).into_iter().map(bf16::from_f32).collect();
        let (prev, wg, x) = (rng(2, tn, 2.0), rng(3, (n * n) as usize, 0.3), rng(4, td, 1.0));
        let wc = rng(5, (layout.n_const * 2 * d) as usize, 0.5);
        let v = rng(6, (layout.n_const * d) as usize, 1.0);
        let inputs = GateInputs {
            tokens: t,
            hidden: d,
            logits: &logits,
            residual: Some(Residual { prev_logits: &prev, wg: &wg }),
            x: &x,
            wc: &wc,
        };
        let cpu = route(&cfg, &inputs).unwrap();
        let cpu_d = dispatch(&cfg, &cpu, t);

        let mut dev = DeviceMoe::<bf16, f32>::new(&stream, &cfg, t, d, true).unwrap();
        dev.upload(&stream, &inputs, &v).unwrap();
        dev.route_and_dispatch(&gpu, &stream).unwrap();
        let (gr, gd) = dev.download(&stream).unwrap();
        let what = format!("N={n} k={k} T={t}");
        assert_eq!(gr.ids, cpu.ids, "{what}: ids");
        for (a, b) in gr.weights.iter().zip(&cpu.weights) {
            assert!((a - b).abs() <= 2e-6, "{what}: weights {a} vs {b}");
        }
        assert_eq!(gd, cpu_d, "{what}: dispatch");

        // Stand-in FFN rows: row r = x[token] * 0.5.
        let rows = cfg.max_rows(t) as usize;
        let mut eo = vec![0f32; rows * d as usize];
        for (r, &tok) in cpu_d.sorted_tokens.iter().enumerate() {
            if tok >= 0 {
                for i in 0..d as usize {
                    eo[r * d as usize + i] = x[tok as usize * d as usize + i] * 0.5;
                }
            }
        }
        stream.memcpy_htod(bytemuck::cast_slice::<f32, u8>(&eo), dev.expert_out_mut()).unwrap();
        dev.combine(&gpu, &stream).unwrap();
        let got = dev.download_out(&stream, d).unwrap();
        let mut want = vec![0f32; td];
        combine(&cfg, &cpu, &cpu_d, &CombineInputs { x: &x, expert_out: &eo, v: &v, hidden: d }, &mut want).unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-5, "{what}: out[{i}] {a} vs {b}");
        }
    }
}

/// A whole MoE++ layer on the GPU: routing and dispatch, every FFN expert's
/// rows with `expert_ffn_gpu` straight into the dispatch's `expert_out`,
/// then combine; against the CPU pipeline with the CPU `expert_ffn`.
#[test]
fn gpu_expert_ffn_layer_matches_cpu() {
    let Some(gpu) = gpu_or_skip("gpu_expert_ffn_layer_matches_cpu") else { return };
    let stream = gpu.new_stream().unwrap();
    for (n, t, d, ffn) in [(20u32, 6u32, 256u32, 1024u32), (12, 64, 128, 300), (40, 1, 96, 64)] {
        let layout = ExpertLayout::paper(n).unwrap();
        let cfg = MoeConfig::new(layout);
        let logits = rng(11, (t * n) as usize, 3.0);
        let x = rng(12, (t * d) as usize, 1.0);
        let wc = rng(13, (layout.n_const * 2 * d) as usize, 0.5);
        let v = rng(14, (layout.n_const * d) as usize, 1.0);
        let weights: Vec<Vec<f32>> =
            (0..layout.n_ffn).map(|e| rng(100 + u64::from(e), (2 * d * ffn) as usize, 0.1)).collect();
        let inputs = GateInputs { tokens: t, hidden: d, logits: &logits, residual: None, x: &x, wc: &wc };
        let what = format!("N={n} T={t} D={d} F={ffn}");

        // CPU.
        let cpu = route(&cfg, &inputs).unwrap();
        let cpu_d = dispatch(&cfg, &cpu, t);
        let total = *cpu_d.expert_offsets.last().unwrap();
        let mut eo = vec![0f32; (cfg.max_rows(t) * u64::from(d)) as usize];
        for (e, w) in weights.iter().enumerate() {
            let (row0, row1) = (cpu_d.expert_offsets[e], cpu_d.expert_offsets[e + 1]);
            let s = FfnShape { tokens: t, hidden: d, ffn, total_rows: total, row0, rows: row1 - row0 };
            expert_ffn(&s, w, &x, &cpu_d.sorted_tokens, &mut eo).unwrap();
        }
        let mut want = vec![0f32; (t * d) as usize];
        combine(&cfg, &cpu, &cpu_d, &CombineInputs { x: &x, expert_out: &eo, v: &v, hidden: d }, &mut want).unwrap();

        // GPU: the routing's own device buffers feed the experts.
        let mut dev = DeviceMoe::<f32, f32>::new(&stream, &cfg, t, d, false).unwrap();
        dev.upload(&stream, &inputs, &v).unwrap();
        dev.route_and_dispatch(&gpu, &stream).unwrap();
        let (_, gd) = dev.download(&stream).unwrap();
        assert_eq!(gd, cpu_d, "{what}: dispatch");
        let mut hid = stream.alloc_zeros::<f32>((cfg.max_rows(t) * u64::from(ffn)) as usize).unwrap();
        for (e, w) in weights.iter().enumerate() {
            let dw = stream.clone_htod(w).unwrap();
            let half = (d * ffn) as usize;
            let (w1, w2) = (dw.slice(..half), dw.slice(half..));
            let (row0, row1) = (gd.expert_offsets[e], gd.expert_offsets[e + 1]);
            let s = FfnShape { tokens: t, hidden: d, ffn, total_rows: total, row0, rows: row1 - row0 };
            let (dx, sorted, out) = dev.ffn_io();
            expert_ffn_gpu(&gpu, &stream, &s, &w1, &w2, dx, sorted, &mut hid, out).unwrap();
        }
        dev.combine(&gpu, &stream).unwrap();
        let got = dev.download_out(&stream, d).unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{what}: out[{i}] {a} vs {b}");
        }
    }
}

/// Inputs that do not match what the buffers were built for come back as
/// errors naming the value, before anything is copied.
#[test]
fn gpu_moe_upload_refuses_inputs_it_was_not_built_for() {
    let Some(_gpu) = gpu_or_skip("gpu_moe_upload_refuses_inputs_it_was_not_built_for") else { return };
    let stream = _gpu.new_stream().unwrap();
    let layout = ExpertLayout::paper(20).unwrap();
    let cfg = MoeConfig::new(layout);
    let (t, d, n) = (8u32, 64u32, 20u32);
    let logits = rng(1, (t * n) as usize, 1.0);
    let (prev, wg) = (rng(2, (t * n) as usize, 1.0), rng(3, (n * n) as usize, 0.3));
    let v = rng(6, (layout.n_const * d) as usize, 1.0);
    let (x, wc) = (rng(4, (t * d) as usize, 1.0), rng(5, (layout.n_const * 2 * d) as usize, 0.5));
    let with_residual = GateInputs {
        tokens: t,
        hidden: d,
        logits: &logits,
        residual: Some(Residual { prev_logits: &prev, wg: &wg }),
        x: &x,
        wc: &wc,
    };
    let without = GateInputs { residual: None, ..with_residual };

    let mut no_prev = DeviceMoe::<f32, f32>::new(&stream, &cfg, t, d, false).unwrap();
    let e = no_prev.upload(&stream, &with_residual, &v).unwrap_err().to_string();
    assert!(e.contains("residual") && e.contains("without"), "{e}");
    no_prev.upload(&stream, &without, &v).unwrap();

    let mut has_prev = DeviceMoe::<f32, f32>::new(&stream, &cfg, t, d, true).unwrap();
    let e = has_prev.upload(&stream, &without, &v).unwrap_err().to_string();
    assert!(e.contains("residual") && e.contains("with a gating residual"), "{e}");

    let mut wide = DeviceMoe::<f32, f32>::new(&stream, &cfg, t, 2 * d, false).unwrap();
    let e = wide.upload(&stream, &without, &v).unwrap_err().to_string();
    assert!(e.contains("hidden") && e.contains(&format!("built for {}", 2 * d)), "{e}");
}
