//! MoE++ routing path (gating + dispatch + combine) for T = 1..16384 tokens,
//! N = 20 experts (16 FFN + 4 zero-computation), top-2, D = 2048: the CPU
//! path on all cores, and on a GPU the kernels (device time per layer).
//! `cargo bench --bench moe`. On a GPU machine, scripts/bench/moe_torch.py
//! times the reference code's PyTorch routing on the same shapes.

use std::hint::black_box;
use std::time::Instant;

use half::bf16;
use memwall::moe::*;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes: &[u32] = if bench { &[1, 16, 256, 1024, 4096, 16384] } else { &[16] };
    let reps = if bench { 9 } else { 1 };
    let layout = ExpertLayout::paper(20).expect("paper layout");
    let cfg = MoeConfig::new(layout);
    let d = 2048u32;
    let gpu = if bench { memwall::gpu::gpu_or_skip("bench moe (GPU columns)") } else { None };
    println!(
        "{:>6} | {:>12} {:>12} {:>12} | {:>12} {:>12}",
        "T", "cpu route", "cpu dispatch", "cpu combine", "gpu route+d", "gpu combine"
    );
    for &t in sizes {
        let n = layout.experts();
        let logits: Vec<bf16> = data((t * n) as usize, 1).into_iter().map(bf16::from_f32).collect();
        let prev = data((t * n) as usize, 2);
        let wg: Vec<f32> = data((n * n) as usize, 3).iter().map(|v| v * 0.1).collect();
        let x: Vec<bf16> = data((t * d) as usize, 4).into_iter().map(bf16::from_f32).collect();
        let wc = data((layout.n_const * 2 * d) as usize, 5);
        let v = data((layout.n_const * d) as usize, 6);
        let inputs = GateInputs {
            tokens: t,
            hidden: d,
            logits: &logits,
            residual: Some(Residual { prev_logits: &prev, wg: &wg }),
            x: &x,
            wc: &wc,
        };
        let r = route(&cfg, &inputs).unwrap();
        let disp = dispatch(&cfg, &r, t);
        let eo = vec![bf16::from_f32(0.5); cfg.max_rows(t) as usize * d as usize];
        let mut out = vec![bf16::ZERO; (t * d) as usize];
        let time = |f: &mut dyn FnMut()| {
            median(
                (0..reps)
                    .map(|_| {
                        let s = Instant::now();
                        f();
                        s.elapsed().as_secs_f64() * 1e6
                    })
                    .collect(),
            )
        };
        let tr = time(&mut || {
            black_box(route(&cfg, &inputs).unwrap());
        });
        let td = time(&mut || {
            black_box(dispatch(&cfg, &r, t));
        });
        let ci = CombineInputs { x: &x, expert_out: &eo, v: &v, hidden: d };
        let tc = time(&mut || combine(&cfg, &r, &disp, &ci, &mut out).unwrap());
        let mut gpu_cols = format!("{:>12} {:>12}", "-", "-");
        if let Some(gpu) = &gpu {
            let stream = gpu.new_stream().unwrap();
            let mut dev = DeviceMoe::<bf16, bf16>::new(&stream, &cfg, t, d, true).unwrap();
            dev.upload(&stream, &inputs, &v).unwrap();
            let ev = |s: &std::sync::Arc<memwall::gpu::cuda::CudaStream>| {
                let e = gpu.new_event(true).unwrap();
                e.record(s).unwrap();
                e
            };
            let mut gr = Vec::new();
            let mut gc = Vec::new();
            for _ in 0..reps.max(20) {
                let a = ev(&stream);
                dev.route_and_dispatch(gpu, &stream).unwrap();
                let b = ev(&stream);
                dev.combine(gpu, &stream).unwrap();
                let c = ev(&stream);
                c.synchronize().unwrap();
                gr.push(f64::from(a.elapsed_ms(&b).unwrap()) * 1e3);
                gc.push(f64::from(b.elapsed_ms(&c).unwrap()) * 1e3);
            }
            gpu_cols = format!("{:>10.1}us {:>10.1}us", median(gr), median(gc));
        }
        println!("{t:>6} | {tr:>10.1}us {td:>10.1}us {tc:>10.1}us | {gpu_cols}");
    }
}
