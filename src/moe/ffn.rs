//! One FFN expert's feed-forward over the rows dispatch gave it,
//! `out[r] = W2 relu(W1 x[token(r)])` in f32: on the CPU ([`expert_ffn`]),
//! the emulator and a GPU (`kernels/expert_ffn.cu`, [`ffn_plans`]).
//!
//! The expert's weights are `W1` (`ffn x hidden`) then `W2`
//! (`hidden x ffn`), row-major, as one slice of `2 * hidden * ffn` floats
//! (how the demo and an expert cache store them). Rows are the expert's
//! range `[row0, row0 + rows)` of [`super::Dispatch::sorted_tokens`]; the
//! outputs land in the same rows of the `expert_out` that
//! [`super::combine`] reads. Padding rows (token -1) get zeros.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use crate::error::{Error, Result};
use crate::gpu::{Access, BufferUse, Dim3, KernelArg, LaunchPlan};
use crate::gpu::{Bind, DeviceRead, DeviceWrite, Gpu};

use super::check_len_at_least;

/// Warps per block of both kernels (`MEMWALL_FFN_WARPS`).
const WARPS: u32 = 8;

/// The sizes of one expert's FFN call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfnShape {
    /// Tokens T (rows of `x`).
    pub tokens: u32,
    /// Hidden size D.
    pub hidden: u32,
    /// FFN hidden size F.
    pub ffn: u32,
    /// Rows of `sorted_tokens` and `expert_out` (the dispatch's row count).
    pub total_rows: u32,
    /// First row of this expert.
    pub row0: u32,
    /// Rows of this expert.
    pub rows: u32,
}

impl FfnShape {
    /// Checks the sizes: all non-zero but `rows`, the expert's rows inside
    /// the dispatch's.
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [("tokens", self.tokens), ("hidden", self.hidden), ("ffn", self.ffn)] {
            if v == 0 {
                return Err(Error::invalid(what, 0, "must be at least 1"));
            }
        }
        let end = u64::from(self.row0) + u64::from(self.rows);
        if end > u64::from(self.total_rows) {
            return Err(Error::invalid(
                "row0 + rows",
                end,
                format!("the dispatch has {} rows (row0 {}, rows {})", self.total_rows, self.row0, self.rows),
            ));
        }
        Ok(())
    }

    /// Floats of one expert's weights, `2 * hidden * ffn`.
    pub fn weight_len(&self) -> usize {
        2 * self.hidden as usize * self.ffn as usize
    }
}

/// Checks the host slices of a CPU or emulated call, including every
/// token index (on a GPU they come from the dispatch kernels).
fn check_inputs(s: &FfnShape, w: &[f32], x: &[f32], sorted: &[i32], out: &[f32]) -> Result<()> {
    s.validate()?;
    let (d, t) = (s.hidden as usize, s.tokens as usize);
    if w.len() != s.weight_len() {
        return Err(Error::invalid(
            "weights",
            w.len(),
            format!("W1 then W2 of hidden {} x ffn {} is {} floats", s.hidden, s.ffn, s.weight_len()),
        ));
    }
    check_len_at_least("x", x.len(), t * d)?;
    check_len_at_least("sorted_tokens", sorted.len(), s.total_rows as usize)?;
    check_len_at_least("expert_out", out.len(), s.total_rows as usize * d)?;
    let rows = &sorted[s.row0 as usize..(s.row0 + s.rows) as usize];
    if let Some(&bad) = rows.iter().find(|&&tok| tok >= 0 && tok as usize >= t) {
        return Err(Error::invalid("sorted_tokens", bad, format!("tokens are 0..{t}")));
    }
    Ok(())
}

/// The expert's rows on the CPU: `out[row] = W2 relu(W1 x[sorted[row]])`
/// for `row` in `[row0, row0 + rows)` (zeros for padding rows); other rows
/// of `out` are untouched. f32 with the same summation order as the
/// kernels' lanes is not attempted: results agree to rounding.
pub fn expert_ffn(s: &FfnShape, w: &[f32], x: &[f32], sorted: &[i32], out: &mut [f32]) -> Result<()> {
    check_inputs(s, w, x, sorted, out)?;
    let (d, f) = (s.hidden as usize, s.ffn as usize);
    let (w1, w2) = w.split_at(f * d);
    let mut hid = vec![0f32; f];
    for row in s.row0 as usize..(s.row0 + s.rows) as usize {
        let o = &mut out[row * d..(row + 1) * d];
        let Ok(t) = usize::try_from(sorted[row]) else {
            o.fill(0.0);
            continue;
        };
        let xt = &x[t * d..(t + 1) * d];
        for (j, h) in hid.iter_mut().enumerate() {
            let dot: f32 = w1[j * d..(j + 1) * d].iter().zip(xt).map(|(a, b)| a * b).sum();
            *h = dot.max(0.0);
        }
        for (j, oj) in o.iter_mut().enumerate() {
            *oj = w2[j * f..(j + 1) * f].iter().zip(&hid).map(|(a, b)| a * b).sum();
        }
    }
    Ok(())
}

/// The up and down plans of one expert's call. Buffer slots: up
/// `[w1, x, sorted, hid]`, down `[w2, hid, sorted, out]`, where `hid` holds
/// `rows x ffn` floats.
pub fn ffn_plans(s: &FfnShape) -> Result<(LaunchPlan, LaunchPlan)> {
    s.validate()?;
    let (t, d, f) = (u64::from(s.tokens), u64::from(s.hidden), u64::from(s.ffn));
    let (total, rows) = (u64::from(s.total_rows), u64::from(s.rows));
    let buf = |name, access, bytes: u64| BufferUse { name, access, min_bytes: bytes.max(4), align: 4 };
    let args = (0..4)
        .map(|slot| KernelArg::Buffer { slot, offset: 0 })
        .chain([s.hidden, s.ffn, s.row0, s.rows].map(KernelArg::U32))
        .collect::<Vec<_>>();
    let plan = |kernel, units: u32, buffers| LaunchPlan {
        module: "expert_ffn",
        kernel,
        grid: Dim3::x(units.div_ceil(WARPS)),
        block: Dim3::x(32 * WARPS),
        dynamic_smem_bytes: 0,
        args: args.clone(),
        buffers,
    };
    let up = plan(
        "memwall_ffn_up_f32",
        s.ffn,
        vec![
            buf("w1", Access::Read, f * d * 4),
            buf("x", Access::Read, t * d * 4),
            buf("sorted_tokens", Access::Read, total * 4),
            buf("hid", Access::Write, rows * f * 4),
        ],
    );
    let down = plan(
        "memwall_ffn_down_f32",
        s.hidden,
        vec![
            buf("w2", Access::Read, d * f * 4),
            buf("hid", Access::Read, rows * f * 4),
            buf("sorted_tokens", Access::Read, total * 4),
            buf("expert_out", Access::Write, total * d * 4),
        ],
    );
    Ok((up, down))
}

/// The expert's rows on the emulator, through the plans a GPU runs.
#[cfg(feature = "emu")]
pub fn expert_ffn_emu(
    emu: &crate::emu::Emulator,
    s: &FfnShape,
    w: &[f32],
    x: &[f32],
    sorted: &[i32],
    out: &mut [f32],
) -> Result<()> {
    use crate::emu::HostBind as H;
    check_inputs(s, w, x, sorted, out)?;
    if s.rows == 0 {
        return Ok(());
    }
    let (up, down) = ffn_plans(s)?;
    let (w1, w2) = w.split_at((s.ffn * s.hidden) as usize);
    let mut hid = vec![0f32; (s.rows * s.ffn) as usize];
    emu.launch(&up, &mut [H::read(w1), H::read(x), H::read(sorted), H::write(&mut hid)])?;
    emu.launch(&down, &mut [H::read(w2), H::read(&hid), H::read(sorted), H::write(out)])
}

/// The expert's rows on `stream`: `w1` and `w2` the expert's weights (for
/// instance two views of one HBM object), `x` the tokens' hidden states,
/// `sorted` the dispatch's sorted tokens, `hid` scratch of `rows x ffn`
/// floats, `out` the dispatch's `expert_out` rows. The token indices are
/// trusted (they come from the dispatch kernels).
#[allow(clippy::too_many_arguments)]
pub fn expert_ffn_gpu(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    s: &FfnShape,
    w1: &dyn DeviceRead,
    w2: &dyn DeviceRead,
    x: &dyn DeviceRead,
    sorted: &dyn DeviceRead,
    hid: &mut CudaSlice<f32>,
    out: &mut dyn DeviceWrite,
) -> Result<()> {
    let (up, down) = ffn_plans(s)?;
    if s.rows == 0 {
        return Ok(());
    }
    gpu.launch(&up, stream, &mut [Bind::Read(w1), Bind::Read(x), Bind::Read(sorted), Bind::Write(hid)])?;
    gpu.launch(&down, stream, &mut [Bind::Read(w2), Bind::Read(&*hid), Bind::Read(sorted), Bind::Write(out)])
}

/// One plan per entry, for the signature tests.
pub(crate) fn sample_plans() -> Vec<LaunchPlan> {
    let s = FfnShape { tokens: 4, hidden: 64, ffn: 96, total_rows: 16, row0: 4, rows: 3 };
    let (up, down) = ffn_plans(&s).expect("sample shape");
    vec![up, down]
}
