//! Attention kernels on a real GPU at real shapes against the CPU reference
//! (f64). Skips without a driver (fails under MEMWALL_REQUIRE_GPU=1).

use half::{bf16, f16};
use memwall::attention::*;
use memwall::dtype::{Dtype, Element};
use memwall::gpu::gpu_or_skip;

fn values<T: Element>(n: usize, seed: u64) -> Vec<T> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let mag = 0.05 + 0.95 * ((s >> 40) as f32 / (1u64 << 24) as f32);
            T::from_f32(if s & 1 == 0 { mag } else { -mag })
        })
        .collect()
}

fn prefill_case<T: Element>(gpu: &memwall::gpu::Gpu, s: &PrefillShape<'_>, what: &str) {
    let stream = gpu.new_stream().unwrap();
    let (eq, ek, ev, eo) = s.extents();
    let (q, k, v) = (values::<T>(eq, 1), values::<T>(ek, 2), values::<T>(ev, 3));
    let (dq, dk, dv) = (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap(), stream.clone_htod(&v).unwrap());
    let mut dout = stream.clone_htod(&vec![T::from_f32(f32::NAN); eo]).unwrap();
    let mut dlse = stream.clone_htod(&vec![f32::NAN; s.lse_len()]).unwrap();
    prefill_gpu(gpu, &stream, s, &dq, &dk, &dv, &mut dout, &mut dlse).unwrap();
    let (o, lse) = (stream.clone_dtoh(&dout).unwrap(), stream.clone_dtoh(&dlse).unwrap());
    let (wo, wl) = prefill_reference(s, &q, &k, &v).unwrap();
    let tol = if T::DTYPE == Dtype::BF16 { 2e-2 } else { 3e-3 };
    for b in 0..s.batch as usize {
        let (sq, _, q0, _) = s.sequence(b);
        for h in 0..s.heads as usize {
            for i in 0..sq {
                let off = s.offset(&s.o, b, q0 + i, h);
                for x in 0..s.head_dim as usize {
                    let (g, w) = (f64::from(o[off + x].to_f32()), wo[off + x]);
                    assert!((g - w).abs() <= tol, "{what}: O[b{b} h{h} i{i} x{x}] {g} vs {w}");
                }
                let li = s.lse_index(b, h, i);
                assert!((f64::from(lse[li]) - wl[li]).abs() <= 1e-3, "{what}: LSE {} vs {}", lse[li], wl[li]);
            }
        }
    }
}

#[test]
fn gpu_prefill_matches_the_reference() {
    let Some(gpu) = gpu_or_skip("gpu_prefill_matches_the_reference") else { return };
    for hd in [64, 128, 256] {
        for causal in [false, true] {
            let mut s = PrefillShape::dense(2, 8, 2, hd, 1000, 1000, Dtype::F16);
            s.causal = causal;
            prefill_case::<f16>(&gpu, &s, &format!("f16 hd{hd} causal={causal}"));
            let mut s = PrefillShape::dense(1, 4, 4, hd, 300, 777, Dtype::BF16);
            s.causal = causal;
            prefill_case::<bf16>(&gpu, &s, &format!("bf16 hd{hd} causal={causal} 300x777"));
        }
    }
    let cu_q = [0, 100, 100, 613];
    let cu_k = [0, 300, 364, 877];
    let mut s = PrefillShape::dense(3, 4, 1, 128, 513, 513, Dtype::F16);
    s.q = Strides::dense(0, 4, 128);
    s.o = s.q;
    s.k = Strides::dense(0, 1, 128);
    s.v = s.k;
    s.causal = true;
    s.varlen = Some(Varlen { cu_seqlens_q: &cu_q, cu_seqlens_k: &cu_k });
    prefill_case::<f16>(&gpu, &s, "varlen");
}

#[test]
fn gpu_decode_matches_the_reference() {
    let Some(gpu) = gpu_or_skip("gpu_decode_matches_the_reference") else { return };
    let stream = gpu.new_stream().unwrap();
    for (hd, heads, kvh, page, lens) in
        [(128u32, 32u32, 8u32, 16u32, vec![4000i32, 1, 777]), (64, 16, 1, 7, vec![2049, 0])]
    {
        let batch = lens.len() as u32;
        let max_pages = lens.iter().map(|&l| (l as u32).div_ceil(page)).max().unwrap();
        let num_pages = batch * max_pages;
        let tables: Vec<i32> = (0..num_pages as i32).rev().collect();
        let s = DecodeShape {
            batch,
            heads,
            kv_heads: kvh,
            head_dim: hd,
            page_size: page,
            num_pages,
            max_pages,
            softmax_scale: 1.0 / (hd as f32).sqrt(),
            dtype: Dtype::BF16,
            block_tables: &tables,
            seq_lens: &lens,
        };
        let (q, k, v) =
            (values::<bf16>(s.q_len(), 4), values::<bf16>(s.cache_len(), 5), values::<bf16>(s.cache_len(), 6));
        let (dq, dk, dv) =
            (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap(), stream.clone_htod(&v).unwrap());
        let mut dout = stream.alloc_zeros::<bf16>(s.q_len()).unwrap();
        let mut dlse = stream.alloc_zeros::<f32>((batch * heads) as usize).unwrap();
        decode_gpu(&gpu, &stream, &s, s.default_splits(), &dq, &dk, &dv, &mut dout, &mut dlse).unwrap();
        let (out, lse) = (stream.clone_dtoh(&dout).unwrap(), stream.clone_dtoh(&dlse).unwrap());
        let (wo, wl) = decode_reference(&s, &q, &k, &v).unwrap();
        for (i, (g, w)) in out.iter().zip(&wo).enumerate() {
            assert!((f64::from(g.to_f32()) - w).abs() <= 1e-2, "hd{hd}: out[{i}] {g} vs {w}");
        }
        for (g, w) in lse.iter().zip(&wl) {
            assert!(if w.is_infinite() { f64::from(*g) == *w } else { (f64::from(*g) - w).abs() <= 1e-3 });
        }
    }
}
