//! Attention on the CPU: an f64 reference and a tiled, multithreaded f32
//! implementation with the same API as the kernels.

use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::parallel::{parallel_ranges, SyncSliceExt};

use super::shape::PrefillShape;

fn check_buffers<T: Element>(s: &PrefillShape<'_>, q: &[T], k: &[T], v: &[T], o: &[T], lse: &[f32]) -> Result<()> {
    s.validate()?;
    super::shape::check_element::<T>(s.dtype)?;
    let (eq, ek, ev, eo) = s.extents();
    for (name, got, need) in [
        ("q", q.len(), eq),
        ("k", k.len(), ek),
        ("v", v.len(), ev),
        ("o", o.len(), eo),
        ("lse", lse.len(), s.lse_len()),
    ] {
        if got < need {
            return Err(Error::invalid(name, format!("{got} elements"), format!("the shape needs {need}")));
        }
    }
    Ok(())
}

/// The reference: softmax(scale Q K^T, masked) V per row in f64, and the
/// row's log-sum-exp. Returns (O, LSE) in f64 in the layout of `o` and `lse`.
pub fn prefill_reference<T: Element>(s: &PrefillShape<'_>, q: &[T], k: &[T], v: &[T]) -> Result<(Vec<f64>, Vec<f64>)> {
    let (_, _, _, eo) = s.extents();
    let mut o = vec![0f64; eo];
    let mut lse = vec![f64::NEG_INFINITY; s.lse_len()];
    check_buffers(s, q, k, v, &vec![T::from_f32(0.0); eo], &vec![0f32; s.lse_len()])?;
    let d = s.head_dim as usize;
    let group = (s.heads / s.kv_heads) as usize;
    for b in 0..s.batch as usize {
        let (sq, sk, q0, k0) = s.sequence(b);
        for h in 0..s.heads as usize {
            let kvh = h / group;
            for i in 0..sq {
                let qo = s.offset(&s.q, b, q0 + i, h);
                let visible =
                    if s.causal { ((i + sk) as i64 - sq as i64 + 1).clamp(0, sk as i64) as usize } else { sk };
                let scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        let ko = s.offset(&s.k, b, k0 + j, kvh);
                        (0..d).map(|x| f64::from(q[qo + x].to_f32()) * f64::from(k[ko + x].to_f32())).sum::<f64>()
                            * f64::from(s.softmax_scale)
                    })
                    .collect();
                let oo = s.offset(&s.o, b, q0 + i, h);
                if scores.is_empty() {
                    continue; // O stays 0, LSE -inf
                }
                let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    let vo = s.offset(&s.v, b, k0 + j, kvh);
                    for x in 0..d {
                        o[oo + x] += ej / sum * f64::from(v[vo + x].to_f32());
                    }
                }
                lse[s.lse_index(b, h, i)] = m + sum.ln();
            }
        }
    }
    Ok((o, lse))
}

/// Query rows per CPU work item.
const BLOCK_M: usize = 64;
/// Keys per online-softmax step.
const BLOCK_N: usize = 64;

/// Prefill attention on all cores: tiles of 64 queries x 64 keys, online
/// softmax in f32, the same results as the kernels up to rounding. Writes
/// O (in `T`) and the natural-log LSE; every row of O in the shape is written.
pub fn prefill<T: Element>(
    s: &PrefillShape<'_>,
    q: &[T],
    k: &[T],
    v: &[T],
    o: &mut [T],
    lse: &mut [f32],
) -> Result<()> {
    check_buffers(s, q, k, v, o, lse)?;
    let d = s.head_dim as usize;
    let group = (s.heads / s.kv_heads) as usize;
    let mut items = Vec::new();
    for b in 0..s.batch as usize {
        let (sq, ..) = s.sequence(b);
        for h in 0..s.heads as usize {
            for m in (0..sq).step_by(BLOCK_M) {
                items.push((b, h, m));
            }
        }
    }
    let o_s = o.sync_slice();
    let lse_s = lse.sync_slice();
    parallel_ranges(items.len(), |first, count| {
        let mut qb = vec![0f32; BLOCK_M * d];
        let mut acc = vec![0f32; BLOCK_M * d];
        let mut kb = vec![0f32; BLOCK_N * d];
        let mut vb = vec![0f32; BLOCK_N * d];
        for &(b, h, m0) in &items[first..first + count] {
            let (sq, sk, q0, k0) = s.sequence(b);
            let kvh = h / group;
            let rows = BLOCK_M.min(sq - m0);
            for r in 0..rows {
                let qo = s.offset(&s.q, b, q0 + m0 + r, h);
                for x in 0..d {
                    qb[r * d + x] = q[qo + x].to_f32() * s.softmax_scale;
                }
            }
            acc[..rows * d].fill(0.0);
            let mut mx = [f32::NEG_INFINITY; BLOCK_M];
            let mut sum = [0f32; BLOCK_M];
            let diag = sk as i64 - sq as i64;
            let end = if s.causal { ((m0 + rows) as i64 + diag).clamp(0, sk as i64) as usize } else { sk };
            for n0 in (0..end).step_by(BLOCK_N) {
                let cols = BLOCK_N.min(end - n0);
                for c in 0..cols {
                    let ko = s.offset(&s.k, b, k0 + n0 + c, kvh);
                    let vo = s.offset(&s.v, b, k0 + n0 + c, kvh);
                    for x in 0..d {
                        kb[c * d + x] = k[ko + x].to_f32();
                        vb[c * d + x] = v[vo + x].to_f32();
                    }
                }
                let mut p = [0f32; BLOCK_N];
                for r in 0..rows {
                    let limit = if s.causal {
                        ((m0 + r) as i64 + diag + 1 - n0 as i64).clamp(0, cols as i64) as usize
                    } else {
                        cols
                    };
                    if limit == 0 {
                        continue;
                    }
                    let qr = &qb[r * d..(r + 1) * d];
                    let mut m_new = mx[r];
                    for c in 0..limit {
                        let kr = &kb[c * d..(c + 1) * d];
                        p[c] = qr.iter().zip(kr).map(|(a, b)| a * b).sum();
                        m_new = m_new.max(p[c]);
                    }
                    let scale = if mx[r] == f32::NEG_INFINITY { 0.0 } else { (mx[r] - m_new).exp() };
                    mx[r] = m_new;
                    sum[r] *= scale;
                    let ar = &mut acc[r * d..(r + 1) * d];
                    ar.iter_mut().for_each(|a| *a *= scale);
                    for c in 0..limit {
                        let e = (p[c] - m_new).exp();
                        sum[r] += e;
                        for (a, vv) in ar.iter_mut().zip(&vb[c * d..(c + 1) * d]) {
                            *a += e * vv;
                        }
                    }
                }
            }
            for r in 0..rows {
                let oo = s.offset(&s.o, b, q0 + m0 + r, h);
                let inv = if sum[r] > 0.0 { 1.0 / sum[r] } else { 0.0 };
                // SAFETY: each (sequence, head, row) is one work item's, so
                // no two threads write the same O row or LSE entry.
                let orow = unsafe { o_s.slice(oo, d) };
                for x in 0..d {
                    orow[x] = T::from_f32(acc[r * d + x] * inv);
                }
                // SAFETY: as above.
                let l = unsafe { lse_s.slice(s.lse_index(b, h, m0 + r), 1) };
                l[0] = if sum[r] > 0.0 { mx[r] + sum[r].ln() } else { f32::NEG_INFINITY };
            }
        }
    });
    Ok(())
}
