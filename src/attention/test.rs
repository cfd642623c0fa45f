use half::{bf16, f16};

use super::*;
use crate::dtype::{Dtype, Element};

/// Deterministic values in [-1, -0.05] U [0.05, 1]: random and never zero.
fn values<T: Element>(n: usize, seed: u64) -> Vec<u128> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let vals: Vec<T> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            let mag = 0.05 + 0.95 * u;
            T::from_f32(if s & 1 == 0 { mag } else { -mag })
        })
        .collect();
    to_words(&vals)
}

/// 16-byte aligned storage for `vals`.
fn to_words<T: Element>(vals: &[T]) -> Vec<u128> {
    let bytes = bytemuck::cast_slice::<T, u8>(vals);
    let mut w = vec![0u128; bytes.len().div_ceil(16).max(1)];
    bytemuck::cast_slice_mut::<u128, u8>(&mut w)[..bytes.len()].copy_from_slice(bytes);
    w
}

fn view<T: Element>(w: &[u128], n: usize) -> &[T] {
    &bytemuck::cast_slice::<u128, T>(w)[..n]
}

fn view_mut<T: Element>(w: &mut [u128], n: usize) -> &mut [T] {
    &mut bytemuck::cast_slice_mut::<u128, T>(w)[..n]
}

/// Asserts O and LSE match the reference on every row of the shape.
fn check<T: Element>(s: &PrefillShape<'_>, o: &[T], lse: &[f32], want_o: &[f64], want_lse: &[f64], what: &str) {
    let tol = if T::DTYPE == Dtype::BF16 { 2e-2 } else { 3e-3 };
    let d = s.head_dim as usize;
    for b in 0..s.batch as usize {
        let (sq, _, q0, _) = s.sequence(b);
        for h in 0..s.heads as usize {
            for i in 0..sq {
                let off = s.offset(&s.o, b, q0 + i, h);
                for x in 0..d {
                    let (g, w) = (f64::from(o[off + x].to_f32()), want_o[off + x]);
                    assert!((g - w).abs() <= tol, "{what}: O[b{b} h{h} i{i} x{x}] = {g}, want {w}");
                }
                let li = s.lse_index(b, h, i);
                let (g, w) = (f64::from(lse[li]), want_lse[li]);
                let ok = if w.is_infinite() { g == w } else { (g - w).abs() <= 1e-3 };
                assert!(ok, "{what}: LSE[b{b} h{h} i{i}] = {g}, want {w}");
            }
        }
    }
}

struct Tensors {
    q: Vec<u128>,
    k: Vec<u128>,
    v: Vec<u128>,
    eo: usize,
}

fn tensors<T: Element>(s: &PrefillShape<'_>, seed: u64) -> Tensors {
    let (eq, ek, ev, eo) = s.extents();
    Tensors { q: values::<T>(eq, seed), k: values::<T>(ek, seed + 1), v: values::<T>(ev, seed + 2), eo }
}

fn run_cpu<T: Element>(s: &PrefillShape<'_>, seed: u64, what: &str) {
    let t = tensors::<T>(s, seed);
    let (eq, ek, ev, _) = s.extents();
    let (q, k, v) = (view::<T>(&t.q, eq), view::<T>(&t.k, ek), view::<T>(&t.v, ev));
    let mut o = vec![T::from_f32(f32::NAN); t.eo];
    let mut lse = vec![f32::NAN; s.lse_len()];
    prefill(s, q, k, v, &mut o, &mut lse).unwrap();
    let (wo, wl) = prefill_reference(s, q, k, v).unwrap();
    check(s, &o, &lse, &wo, &wl, what);
}

/// The shapes both paths are tested on: GQA, MQA, causal with seqlen_q <
/// seqlen_k, lengths that are not tile multiples, a head-major layout.
fn shapes(dtype: Dtype, hd: u32) -> Vec<(String, PrefillShape<'static>)> {
    let mut out = Vec::new();
    for (b, h, kvh, sq, sk, causal) in [
        (2u32, 4u32, 2u32, 70u32, 70u32, false),
        (1, 2, 1, 37, 150, true),
        (2, 2, 2, 100, 100, true),
        (1, 1, 1, 1, 65, false),
    ] {
        let mut s = PrefillShape::dense(b, h, kvh, hd, sq, sk, dtype);
        s.causal = causal;
        out.push((format!("{dtype:?} hd{hd} b{b} h{h}/{kvh} {sq}x{sk} causal={causal}"), s));
    }
    // [batch, heads, seq, dim] through strides, and a padded row stride.
    let mut s = PrefillShape::dense(2, 2, 1, hd, 50, 90, dtype);
    s.q = Strides { batch: 2 * 50 * i64::from(hd), row: i64::from(hd), head: 50 * i64::from(hd) };
    s.k = Strides { batch: 90 * (i64::from(hd) + 8), row: i64::from(hd) + 8, head: 0 };
    s.v = s.k;
    s.o = s.q;
    out.push((format!("{dtype:?} hd{hd} strided"), s));
    out
}

#[test]
fn cpu_prefill_matches_the_reference() {
    for dt in [Dtype::F16, Dtype::BF16] {
        for hd in [64, 128, 256] {
            for (i, (what, s)) in shapes(dt, hd).into_iter().enumerate() {
                match dt {
                    Dtype::F16 => run_cpu::<f16>(&s, i as u64, &what),
                    _ => run_cpu::<bf16>(&s, i as u64, &what),
                }
            }
        }
    }
}

#[test]
fn variable_length_batches() {
    let cu_q = [0, 5, 5, 70, 71];
    let cu_k = [0, 9, 40, 110, 111];
    let mut s = PrefillShape::dense(4, 2, 1, 64, 65, 70, Dtype::F16);
    s.q = Strides::dense(0, 2, 64);
    s.k = Strides::dense(0, 1, 64);
    s.v = s.k;
    s.o = s.q;
    s.causal = true;
    s.varlen = Some(Varlen { cu_seqlens_q: &cu_q, cu_seqlens_k: &cu_k });
    assert_eq!(s.rows(), (71, 111));
    run_cpu::<f16>(&s, 3, "varlen cpu");
    #[cfg(feature = "emu")]
    run_emu::<f16>(&s, 3, "varlen emu");
}

#[test]
fn bad_shapes_are_errors() {
    let s = PrefillShape::dense(1, 2, 1, 96, 8, 8, Dtype::F16);
    assert!(PrefillShape::dense(1, 2, 1, 256, 8, 8, Dtype::F16).validate().is_ok());
    assert!(s.validate().unwrap_err().to_string().contains("head_dim = 96"));
    let s = PrefillShape::dense(1, 6, 4, 64, 8, 8, Dtype::F16);
    assert!(s.validate().unwrap_err().to_string().contains("kv_heads = 4"));
    let mut s = PrefillShape::dense(1, 2, 1, 64, 8, 8, Dtype::F16);
    s.q.row = 132;
    assert!(s.validate().unwrap_err().to_string().contains("q.row = 132"));
    let s = PrefillShape::dense(1, 2, 1, 64, 8, 8, Dtype::F32);
    assert!(s.validate().is_err());
    let mut s = PrefillShape::dense(2, 2, 1, 64, 8, 8, Dtype::F16);
    let bad = [0, 9, 12];
    s.varlen = Some(Varlen { cu_seqlens_q: &bad, cu_seqlens_k: &bad });
    assert!(s.validate().unwrap_err().to_string().contains("cu_seqlens_q"));
    let s = PrefillShape::dense(1, 2, 1, 64, 8, 8, Dtype::BF16);
    let x = vec![f16::ONE; 1024];
    let err = prefill(&s, &x, &x, &x, &mut x.clone(), &mut [0.0; 16]).unwrap_err().to_string();
    assert!(err.contains("element type = F16: the shape says BF16"), "{err}");
    let s = PrefillShape::dense(1, 2, 1, 64, 8, 8, Dtype::F16);
    let (q, k) = (vec![f16::ONE; 1024], vec![f16::ONE; 511]);
    let mut o = vec![f16::ZERO; 1024];
    let err = prefill(&s, &q, &k, &k, &mut o, &mut [0.0; 16]).unwrap_err().to_string();
    assert!(err.contains("k = 511 elements: the shape needs 512"), "{err}");
}

#[cfg(feature = "emu")]
fn run_emu<T: Element>(s: &PrefillShape<'_>, seed: u64, what: &str) {
    let t = tensors::<T>(s, seed);
    let (eq, ek, ev, eo) = s.extents();
    let (q, k, v) = (view::<T>(&t.q, eq), view::<T>(&t.k, ek), view::<T>(&t.v, ev));
    // Poisoned outputs: any element of the shape left unwritten stays NaN.
    let mut o = to_words(&vec![T::from_f32(f32::NAN); eo]);
    let mut lse = vec![f32::NAN; s.lse_len()];
    prefill_emu(&crate::emu::Emulator::new(), s, q, k, v, view_mut::<T>(&mut o, eo), &mut lse).unwrap();
    let (wo, wl) = prefill_reference(s, q, k, v).unwrap();
    check(s, view::<T>(&o, eo), &lse, &wo, &wl, what);
}

#[cfg(feature = "emu")]
#[test]
fn emulated_prefill_matches_the_reference() {
    for dt in [Dtype::F16, Dtype::BF16] {
        for hd in [64, 128, 256] {
            for (i, (what, s)) in shapes(dt, hd).into_iter().enumerate() {
                // Keep the emulated suite fast: bf16 runs the even cases, hd 256 two cases.
                if (dt == Dtype::BF16 && i % 2 == 1) || (hd == 256 && i % 3 != 1) {
                    continue;
                }
                match dt {
                    Dtype::F16 => run_emu::<f16>(&s, i as u64, &what),
                    _ => run_emu::<bf16>(&s, i as u64, &what),
                }
            }
        }
    }
}

/// A decode case: random cache pages handed out in shuffled order.
struct DecodeCase {
    batch: u32,
    heads: u32,
    kvh: u32,
    hd: u32,
    page: u32,
    num_pages: u32,
    max_pages: u32,
    tables: Vec<i32>,
    lens: Vec<i32>,
    q: Vec<u128>,
    k: Vec<u128>,
    v: Vec<u128>,
}

/// (heads, kv heads, head dim, page size).
type Heads = (u32, u32, u32, u32);

fn decode_case<T: Element>((heads, kvh, hd, page): Heads, lens: &[i32], seed: u64) -> DecodeCase {
    let batch = lens.len() as u32;
    let max_pages = lens.iter().map(|&l| (l.max(0) as u32).div_ceil(page)).max().unwrap_or(1).max(1);
    let num_pages = batch * max_pages + 3;
    // Pages in a scrambled order, so block tables are not the identity.
    let mut pages: Vec<i32> = (0..num_pages as i32).collect();
    pages.reverse();
    pages.rotate_left(2);
    let tables: Vec<i32> = (0..(batch * max_pages) as usize).map(|i| pages[i]).collect();
    let cache = (num_pages * page * kvh * hd) as usize;
    DecodeCase {
        batch,
        heads,
        kvh,
        hd,
        page,
        num_pages,
        max_pages,
        tables,
        lens: lens.to_vec(),
        q: values::<T>((batch * heads * hd) as usize, seed),
        k: values::<T>(cache, seed + 1),
        v: values::<T>(cache, seed + 2),
    }
}

impl DecodeCase {
    fn shape(&self, dtype: Dtype) -> DecodeShape<'_> {
        DecodeShape {
            batch: self.batch,
            heads: self.heads,
            kv_heads: self.kvh,
            head_dim: self.hd,
            page_size: self.page,
            num_pages: self.num_pages,
            max_pages: self.max_pages,
            softmax_scale: 1.0 / (self.hd as f32).sqrt(),
            dtype,
            block_tables: &self.tables,
            seq_lens: &self.lens,
        }
    }
}

fn check_decode<T: Element>(s: &DecodeShape<'_>, out: &[T], lse: &[f32], want: &(Vec<f64>, Vec<f64>), what: &str) {
    let tol = if T::DTYPE == Dtype::BF16 { 1e-2 } else { 2e-3 };
    for (i, (g, w)) in out.iter().zip(&want.0).enumerate() {
        assert!((f64::from(g.to_f32()) - w).abs() <= tol, "{what}: out[{i}] = {}, want {w}", g.to_f32());
    }
    for (i, (g, w)) in lse.iter().zip(&want.1).enumerate() {
        let ok = if w.is_infinite() { f64::from(*g) == *w } else { (f64::from(*g) - w).abs() <= 1e-3 };
        assert!(ok, "{what}: lse[{i}] = {g}, want {w}");
    }
    assert_eq!(out.len(), s.q_len());
}

#[test]
fn cpu_decode_matches_the_reference() {
    for (hd, heads, kvh, page, lens) in [
        (64u32, 4u32, 2u32, 16u32, vec![1i32, 40, 0]),
        (128, 8, 1, 7, vec![100, 33]),  // MQA, a page size no other library allows
        (128, 12, 4, 1, vec![9]),       // one token per page
        (64, 2, 2, 300, vec![513, 20]), // pages larger than the sequence
    ] {
        let batch = lens.len() as u32;
        let c = decode_case::<f16>((heads, kvh, hd, page), &lens, u64::from(hd + page));
        let s = c.shape(Dtype::F16);
        let (q, k, v) =
            (view::<f16>(&c.q, s.q_len()), view::<f16>(&c.k, s.cache_len()), view::<f16>(&c.v, s.cache_len()));
        let mut out = vec![f16::NAN; s.q_len()];
        let mut lse = vec![f32::NAN; (batch * heads) as usize];
        decode(&s, q, k, v, &mut out, &mut lse).unwrap();
        check_decode(&s, &out, &lse, &decode_reference(&s, q, k, v).unwrap(), &format!("cpu hd{hd} page{page}"));
    }
}

#[test]
fn decode_rejects_out_of_range_block_tables() {
    let mut c = decode_case::<f16>((2, 1, 64, 4), &[10, 3], 1);
    c.tables[1] = c.num_pages as i32; // sequence 0's second page
    let s = c.shape(Dtype::F16);
    let e = s.validate().unwrap_err().to_string();
    assert!(e.contains("sequence 0, page 1") && e.contains("out of range"), "{e}");
    // An unused entry past the sequence's pages may hold anything.
    let mut c = decode_case::<f16>((2, 1, 64, 4), &[4, 8], 1);
    assert_eq!(c.max_pages, 2);
    c.tables[1] = -7; // sequence 0 holds 4 tokens: one page
    assert!(c.shape(Dtype::F16).validate().is_ok());
    let mut c = decode_case::<f16>((2, 1, 64, 4), &[4], 1);
    c.lens[0] = 5;
    assert!(c.shape(Dtype::F16).validate().unwrap_err().to_string().contains("seq_lens"));
}

#[cfg(feature = "emu")]
#[test]
fn emulated_decode_matches_the_reference() {
    let emu = crate::emu::Emulator::new();
    for (dt, hd, heads, kvh, page, lens, splits) in [
        (Dtype::F16, 64u32, 4u32, 2u32, 16u32, vec![1i32, 40, 0], 1u32),
        (Dtype::BF16, 128, 8, 1, 7, vec![100, 33], 3),
        (Dtype::F16, 128, 20, 2, 5, vec![77], 4), // 10 heads per kv head: two head chunks
        (Dtype::BF16, 64, 2, 2, 3, vec![50, 2], 8), // more splits than some sequences have keys
    ] {
        let batch = lens.len() as u32;
        let what = format!("emu {dt:?} hd{hd} h{heads}/{kvh} page{page} splits{splits}");
        macro_rules! go {
            ($t:ty) => {{
                let c = decode_case::<$t>((heads, kvh, hd, page), &lens, u64::from(hd + page));
                let s = c.shape(dt);
                let (q, k, v) =
                    (view::<$t>(&c.q, s.q_len()), view::<$t>(&c.k, s.cache_len()), view::<$t>(&c.v, s.cache_len()));
                let mut out = vec![<$t>::NAN; s.q_len()];
                let mut lse = vec![f32::NAN; (batch * heads) as usize];
                decode_emu(&emu, &s, splits, q, k, v, &mut out, &mut lse).unwrap();
                check_decode(&s, &out, &lse, &decode_reference(&s, q, k, v).unwrap(), &what);
            }};
        }
        match dt {
            Dtype::F16 => go!(f16),
            _ => go!(bf16),
        }
    }
}
