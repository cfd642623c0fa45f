//! Causal prefill attention with grouped-query heads on the CPU path, checked
//! against the f64 reference; the same call runs on a GPU with
//! `attention::prefill_gpu`. `cargo run --example attention_cpu`
use half::f16;
use memwall::attention::{prefill, prefill_reference, PrefillShape};
use memwall::dtype::Dtype;

fn main() -> memwall::Result<()> {
    let mut s = PrefillShape::dense(2, 4, 2, 64, 100, 100, Dtype::F16); // batch 2, 4 heads over 2 kv heads
    s.causal = true;
    let (eq, ek, ev, eo) = s.extents();
    let val = |i: usize, f: f32| f16::from_f32(0.5 * ((i as f32) * f).sin());
    let q: Vec<f16> = (0..eq).map(|i| val(i, 0.013)).collect();
    let k: Vec<f16> = (0..ek).map(|i| val(i, 0.029)).collect();
    let v: Vec<f16> = (0..ev).map(|i| val(i, 0.047)).collect();
    let mut o = vec![f16::ZERO; eo];
    let mut lse = vec![0f32; s.lse_len()];
    prefill(&s, &q, &k, &v, &mut o, &mut lse)?;
    let (want, _) = prefill_reference(&s, &q, &k, &v)?;
    let err = o.iter().zip(&want).map(|(a, b)| (f64::from(a.to_f32()) - b).abs()).fold(0.0, f64::max);
    println!("max |O - reference| = {err:.2e} over {eo} outputs");
    assert!(err < 3e-3);
    Ok(())
}
