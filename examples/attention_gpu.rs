//! The README's attention snippet on a GPU: causal GQA prefill in bf16 with
//! head dim 128 (`prefill_gpu`), then one decode step over a paged KV cache
//! with pages of 16 tokens and split-KV (`decode_gpu`), each checked against
//! the CPU path. Without a GPU it prints why and exits 0
//! (`MEMWALL_REQUIRE_GPU=1` makes that a failure). `cargo run --example
//! attention_gpu`
use half::bf16;
use memwall::attention::{decode, decode_gpu, prefill, prefill_gpu, DecodeShape, PrefillShape};
use memwall::dtype::Dtype;
use memwall::gpu::gpu_or_skip;
use memwall::Error;

fn values(n: usize, f: f32) -> Vec<bf16> {
    (0..n).map(|i| bf16::from_f32(0.5 * ((i as f32) * f).sin() + 0.01)).collect()
}

fn max_diff(a: &[bf16], b: &[bf16]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x.to_f32() - y.to_f32()).abs()).fold(0.0, f32::max)
}

fn main() -> memwall::Result<()> {
    let Some(gpu) = gpu_or_skip("example attention_gpu") else { return Ok(()) };
    let stream = gpu.new_stream()?;
    let up = |x: &[bf16]| stream.clone_htod(x).map_err(|e| Error::driver("uploading", e));

    // Prefill: batch 2, 8 query heads over 2 kv heads, 256 tokens each.
    let mut s = PrefillShape::dense(2, 8, 2, 128, 256, 256, Dtype::BF16); // [batch, seq, heads, dim]
    s.causal = true;
    let (eq, ek, ev, eo) = s.extents();
    let (q, k, v) = (values(eq, 0.013), values(ek, 0.029), values(ev, 0.047));
    let (dq, dk, dv) = (up(&q)?, up(&k)?, up(&v)?);
    let mut o = stream.alloc_zeros::<bf16>(eo).map_err(|e| Error::driver("allocating O", e))?;
    let mut lse = stream.alloc_zeros::<f32>(s.lse_len()).map_err(|e| Error::driver("allocating LSE", e))?;
    prefill_gpu(&gpu, &stream, &s, &dq, &dk, &dv, &mut o, &mut lse)?; // FA2-style; lse per row
    let got = stream.clone_dtoh(&o).map_err(|e| Error::driver("downloading O", e))?;
    let (mut want, mut want_lse) = (vec![bf16::ZERO; eo], vec![0f32; s.lse_len()]);
    prefill(&s, &q, &k, &v, &mut want, &mut want_lse)?;
    let prefill_err = max_diff(&got, &want);
    println!("prefill: max |GPU - CPU| = {prefill_err:.2e} over {eo} outputs");

    // Decode: 2 sequences of 1000 and 37 tokens in 16-token pages, pages
    // handed out in reverse so the block tables matter.
    let (page, lens) = (16u32, [1000i32, 37]);
    let max_pages = lens.iter().map(|&l| (l as u32).div_ceil(page)).max().unwrap_or(1);
    let num_pages = 2 * max_pages;
    let tables: Vec<i32> = (0..num_pages as i32).rev().collect();
    let d = DecodeShape {
        batch: 2,
        heads: 8,
        kv_heads: 2,
        head_dim: 128,
        page_size: page,
        num_pages,
        max_pages,
        softmax_scale: 1.0 / 128f32.sqrt(),
        dtype: Dtype::BF16,
        block_tables: &tables,
        seq_lens: &lens,
    };
    let (q1, kc, vc) = (values(d.q_len(), 0.011), values(d.cache_len(), 0.023), values(d.cache_len(), 0.031));
    let (dq1, dkc, dvc) = (up(&q1)?, up(&kc)?, up(&vc)?);
    let mut out = stream.alloc_zeros::<bf16>(d.q_len()).map_err(|e| Error::driver("allocating out", e))?;
    let mut lse1 = stream.alloc_zeros::<f32>(16).map_err(|e| Error::driver("allocating LSE", e))?;
    decode_gpu(&gpu, &stream, &d, d.default_splits(), &dq1, &dkc, &dvc, &mut out, &mut lse1)?;
    let got = stream.clone_dtoh(&out).map_err(|e| Error::driver("downloading out", e))?;
    let (mut want, mut want_lse) = (vec![bf16::ZERO; d.q_len()], vec![0f32; 16]);
    decode(&d, &q1, &kc, &vc, &mut want, &mut want_lse)?;
    let decode_err = max_diff(&got, &want);
    println!("decode: max |GPU - CPU| = {decode_err:.2e} over {} outputs, {} splits", d.q_len(), d.default_splits());
    assert!(prefill_err < 2e-2 && decode_err < 2e-2, "bf16 outputs differ from the CPU path");
    Ok(())
}
