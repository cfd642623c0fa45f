//! Attention throughput. `cargo bench --bench attention`.
//!
//! Prefill: TFLOP/s counted as 4 B S^2 H D (halved for causal), with
//! B S = 16k tokens and H D = 2048, seq 512..16k, hd 64 and 128, on the GPU
//! when there is one (scripts/bench/attention_torch.py runs PyTorch's
//! scaled_dot_product_attention on the same shapes). The CPU row is one
//! small shape (the CPU path is the fallback, not a contender).
//! Decode: GB/s of K and V read per step over a paged cache (page 16),
//! 32 query heads over 8 kv heads, hd 128, against the device's copy rate.

use std::time::Instant;

use half::f16;
use memwall::attention::*;
use memwall::dtype::Dtype;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    // CPU: one shape, GFLOP/s.
    let (seq, heads, hd) = if bench { (512u32, 4u32, 64u32) } else { (64, 1, 64) };
    let s = PrefillShape::dense(1, heads, heads, hd, seq, seq, Dtype::F16);
    let (eq, ek, ev, eo) = s.extents();
    let (q, k, v) = (vec![f16::from_f32(0.1); eq], vec![f16::from_f32(0.2); ek], vec![f16::from_f32(0.3); ev]);
    let mut o = vec![f16::ZERO; eo];
    let mut lse = vec![0f32; s.lse_len()];
    let t = median(
        (0..3)
            .map(|_| {
                let st = Instant::now();
                prefill(&s, &q, &k, &v, &mut o, &mut lse).unwrap();
                st.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let flops = 4.0 * f64::from(seq) * f64::from(seq) * f64::from(heads * hd);
    println!("cpu prefill f16 B1 S{seq} H{heads} D{hd}: {:.2} GFLOP/s ({:.1} ms)", flops / t / 1e9, t * 1e3);

    let Some(gpu) = (if bench { memwall::gpu::gpu_or_skip("bench attention (GPU)") } else { None }) else { return };
    let stream = gpu.new_stream().unwrap();
    println!("\n{:>5} {:>4} {:>6} {:>6} | {:>9}", "hd", "dt", "seq", "causal", "TFLOP/s");
    for hd in [64u32, 128] {
        for seq in [512u32, 1024, 2048, 4096, 8192, 16384] {
            for causal in [false, true] {
                let batch = 16384 / seq;
                let heads = 2048 / hd;
                let mut s = PrefillShape::dense(batch, heads, heads, hd, seq, seq, Dtype::BF16);
                s.causal = causal;
                let (eq, ek, ev, eo) = s.extents();
                let mk = |n: usize| stream.alloc_zeros::<half::bf16>(n).unwrap();
                let (dq, dk, dv, mut dout) = (mk(eq), mk(ek), mk(ev), mk(eo));
                let mut dlse = stream.alloc_zeros::<f32>(s.lse_len()).unwrap();
                let mut times = Vec::new();
                for i in 0..12 {
                    let a = gpu.new_event(true).unwrap();
                    a.record(&stream).unwrap();
                    prefill_gpu(&gpu, &stream, &s, &dq, &dk, &dv, &mut dout, &mut dlse).unwrap();
                    let b = gpu.new_event(true).unwrap();
                    b.record(&stream).unwrap();
                    b.synchronize().unwrap();
                    if i >= 2 {
                        times.push(f64::from(a.elapsed_ms(&b).unwrap()) / 1e3);
                    }
                }
                let mut flops = 4.0 * f64::from(batch) * f64::from(seq) * f64::from(seq) * f64::from(heads * hd);
                if causal {
                    flops /= 2.0;
                }
                println!("{hd:>5} {:>4} {seq:>6} {causal:>6} | {:>9.1}", "bf16", flops / median(times) / 1e12);
            }
        }
    }

    println!("\n{:>6} {:>7} | {:>8} {:>8}", "batch", "context", "GB/s", "us");
    for batch in [1u32, 8] {
        for ctx in [4096i32, 16384, 65536] {
            let (heads, kvh, hd, page) = (32u32, 8u32, 128u32, 16u32);
            let max_pages = (ctx as u32).div_ceil(page);
            let num_pages = batch * max_pages;
            let tables: Vec<i32> = (0..num_pages as i32).collect();
            let lens = vec![ctx; batch as usize];
            let s = DecodeShape {
                batch,
                heads,
                kv_heads: kvh,
                head_dim: hd,
                page_size: page,
                num_pages,
                max_pages,
                softmax_scale: 0.088,
                dtype: Dtype::BF16,
                block_tables: &tables,
                seq_lens: &lens,
            };
            let mk = |n: usize| stream.alloc_zeros::<half::bf16>(n).unwrap();
            let (dq, dk, dv, mut dout) = (mk(s.q_len()), mk(s.cache_len()), mk(s.cache_len()), mk(s.q_len()));
            let mut dlse = stream.alloc_zeros::<f32>((batch * heads) as usize).unwrap();
            let mut times = Vec::new();
            for i in 0..12 {
                let a = gpu.new_event(true).unwrap();
                a.record(&stream).unwrap();
                decode_gpu(&gpu, &stream, &s, s.default_splits(), &dq, &dk, &dv, &mut dout, &mut dlse).unwrap();
                let b = gpu.new_event(true).unwrap();
                b.record(&stream).unwrap();
                b.synchronize().unwrap();
                if i >= 2 {
                    times.push(f64::from(a.elapsed_ms(&b).unwrap()) / 1e3);
                }
            }
            let bytes = 2.0 * f64::from(batch) * f64::from(ctx) * f64::from(kvh * hd) * 2.0;
            let t = median(times);
            println!("{batch:>6} {ctx:>7} | {:>8.0} {:>8.1}", bytes / t / 1e9, t * 1e6);
        }
    }
}
