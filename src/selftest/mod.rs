//! Self-test kernels (`kernels/selftest.cu`): launch plans and CPU oracles.
//!
//! Each kernel exercises one primitive of the CUDA dialect (shuffles, votes,
//! barriers with shared memory, mma.sync, ldmatrix, cp.async, dynamic shared
//! memory) with a fully determined result. The emulator's tests check them
//! against the oracles here; the GPU conformance test runs the same plans on
//! a device and on the emulator and compares the bytes. [`bad_plan`] kernels
//! break a rule on purpose, for the emulator's fault detection.

use crate::gpu::{Access, BufferUse, Dim3, KernelArg, LaunchPlan};

#[cfg(test)]
mod test;

const MODULE: &str = "selftest";

fn plan(
    kernel: &'static str,
    grid: u32,
    block: u32,
    smem: u32,
    args: Vec<KernelArg>,
    buffers: Vec<BufferUse>,
) -> LaunchPlan {
    LaunchPlan {
        module: MODULE,
        kernel,
        grid: Dim3::x(grid),
        block: Dim3::x(block),
        dynamic_smem_bytes: smem,
        args,
        buffers,
    }
}

/// A buffer the kernel reads, with elements of `align` bytes.
fn read(name: &'static str, bytes: u64, align: u64) -> BufferUse {
    BufferUse { name, access: Access::Read, min_bytes: bytes, align }
}

/// A buffer the kernel writes, with elements of `align` bytes.
fn write(name: &'static str, bytes: u64, align: u64) -> BufferUse {
    BufferUse { name, access: Access::Write, min_bytes: bytes, align }
}

fn buf(slot: usize) -> KernelArg {
    KernelArg::Buffer { slot, offset: 0 }
}

/// Which shuffle [`shfl_plan`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shfl {
    /// `__shfl_sync(mask, v, b, width)`.
    Idx = 0,
    /// `__shfl_up_sync(mask, v, b, width)`.
    Up = 1,
    /// `__shfl_down_sync(mask, v, b, width)`.
    Down = 2,
    /// `__shfl_xor_sync(mask, v, b, width)`.
    Xor = 3,
}

/// `out[t]` = shuffle of `in[t]` (`i32`), `warps` full warps in one block.
pub fn shfl_plan(warps: u32, mode: Shfl, b: u32, width: i32) -> LaunchPlan {
    let n = u64::from(warps) * 32 * 4;
    plan(
        "memwall_selftest_shfl",
        1,
        warps * 32,
        0,
        vec![buf(0), buf(1), KernelArg::I32(mode as i32), KernelArg::U32(b), KernelArg::I32(width)],
        vec![read("in", n, 4), write("out", n, 4)],
    )
}

/// The source lane PTX `shfl.sync` reads for `lane` (the lane itself when
/// the source is out of range), for the oracle of [`shfl_plan`].
pub fn shfl_source(mode: Shfl, lane: u32, b: u32, width: u32) -> u32 {
    let segmask = 32 - width;
    let cval = if mode == Shfl::Up { 0 } else { 31 };
    let max_lane = (lane & segmask) | (cval & !segmask);
    let min_lane = lane & segmask;
    let (j, ok) = match mode {
        Shfl::Up => {
            let j = lane as i64 - b as i64;
            (j, j >= max_lane as i64)
        }
        Shfl::Down => {
            let j = lane as i64 + b as i64;
            (j, j <= max_lane as i64)
        }
        Shfl::Xor => {
            let j = (lane ^ b) as i64;
            (j, j <= max_lane as i64)
        }
        Shfl::Idx => {
            let j = (min_lane | (b & 31 & !segmask)) as i64;
            (j, j <= max_lane as i64)
        }
    };
    if ok {
        j as u32
    } else {
        lane
    }
}

/// Per warp `w`: `out[4w..4w+4]` = ballot, any, all, and the ballot of lanes
/// 0..15 with mask `0x0000ffff`, of `pred[t]` (`i32`).
pub fn vote_plan(warps: u32) -> LaunchPlan {
    plan(
        "memwall_selftest_vote",
        1,
        warps * 32,
        0,
        vec![buf(0), buf(1)],
        vec![read("pred", u64::from(warps) * 32 * 4, 4), write("out", u64::from(warps) * 16, 4)],
    )
}

/// `out[b]` = tree sum of `in[256b..256b+256]` (`f32`), `blocks` blocks.
pub fn block_sum_plan(blocks: u32) -> LaunchPlan {
    plan(
        "memwall_selftest_block_sum",
        blocks,
        256,
        0,
        vec![buf(0), buf(1)],
        vec![read("in", u64::from(blocks) * 1024, 4), write("out", u64::from(blocks) * 4, 4)],
    )
}

/// The kernel's reduction order in f32: pairwise at strides 128, 64, ... 1.
pub fn block_sum_oracle(values: &[f32]) -> f32 {
    let mut p = values.to_vec();
    let mut stride = p.len() / 2;
    while stride > 0 {
        for t in 0..stride {
            p[t] += p[t + stride];
        }
        stride /= 2;
    }
    p[0]
}

/// One warp: `d` (16x8 f32) = `a` (16x16) * `b` (16x8, column-major) + `c`,
/// with `a` and `b` raw f16 bits, or bf16 bits when `bf16`.
pub fn mma_plan(bf16: bool) -> LaunchPlan {
    plan(
        "memwall_selftest_mma",
        1,
        32,
        0,
        vec![buf(0), buf(1), buf(2), buf(3), KernelArg::I32(bf16 as i32)],
        vec![read("a", 512, 2), read("b", 256, 2), read("c", 512, 4), write("d", 512, 4)],
    )
}

/// One warp: four 8x8 matrices of `u16` (256 values) through shared memory
/// and `ldmatrix.x{count}` (`.trans` when `trans`); `out[4 * lane + j]` =
/// register `j` of `lane` (`u32`, 0 for `j >= count`).
pub fn ldmatrix_plan(count: u32, trans: bool) -> LaunchPlan {
    plan(
        "memwall_selftest_ldmatrix",
        1,
        32,
        0,
        vec![buf(0), buf(1), KernelArg::I32(count as i32), KernelArg::I32(trans as i32)],
        vec![read("src", 512, 2), write("out", 512, 4)],
    )
}

/// The oracle of [`ldmatrix_plan`]: register `j` of `lane`.
pub fn ldmatrix_oracle(src: &[u16], count: u32, trans: bool, lane: u32, j: u32) -> u32 {
    if j >= count {
        return 0;
    }
    let elem = |h: u32| {
        let (r, c) = (lane / 4, 2 * (lane % 4) + h);
        let (row, col) = if trans { (c, r) } else { (r, c) };
        u32::from(src[(j * 64 + row * 8 + col) as usize])
    };
    elem(0) | (elem(1) << 16)
}

/// 32 threads: `out[0..32]`, `out[32..64]` = `src[0..64]` through two
/// committed cp.async groups, `out[64..96]` = zero-filled copies (16-byte
/// elements).
pub fn cp_async_plan() -> LaunchPlan {
    plan(
        "memwall_selftest_cp_async",
        1,
        32,
        3 * 32 * 16,
        vec![buf(0), buf(1)],
        vec![read("src", 1024, 16), write("out", 1536, 16)],
    )
}

/// Thread 0 writes `1.5` to dynamic shared float `index` of a block with
/// `smem_floats` floats, and reads it back into `out[0]`.
pub fn smem_index_plan(smem_floats: u32, index: u32) -> LaunchPlan {
    plan(
        "memwall_selftest_smem_index",
        1,
        32,
        smem_floats * 4,
        vec![buf(0), KernelArg::U32(index)],
        vec![write("out", 4, 4)],
    )
}

/// The rule a [`bad_plan`] kernel breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Half the block skips a `__syncthreads` the other half waits at.
    DivergentBarrier = 0,
    /// Lanes pass different masks to one shuffle.
    MaskDisagreement = 1,
    /// A full-mask shuffle waits for lanes that have exited.
    ExitedLanes = 2,
    /// A shuffle's mask leaves out the calling lane.
    MaskWithoutCaller = 3,
    /// Shared memory read before the cp.async filling it was waited for.
    ReadBeforeCpAsyncWait = 4,
    /// Lane 0 waits in a shuffle for lanes that wait at a barrier.
    WarpWaitsOnBarrier = 5,
}

/// One block of `threads` threads (a multiple of 32, at most 32 for
/// [`Bad::ReadBeforeCpAsyncWait`]) breaking `rule`; `out` holds `i32` per
/// thread and is also the cp.async source.
pub fn bad_plan(rule: Bad, threads: u32) -> LaunchPlan {
    plan(
        "memwall_selftest_bad",
        1,
        threads,
        0,
        vec![buf(0), KernelArg::I32(rule as i32)],
        vec![write("out", u64::from(threads.max(32)) * 16, 16)],
    )
}

/// Grid-wide atomics over `n` inputs (`u32`): `hist` (16 x `u32`) counts
/// `in % 16`, `sums` (1 x `f32`) adds the inputs, `maxima` (1 x `u32`) keeps
/// the largest. Outputs must start zeroed.
pub fn atomics_plan(n: u32) -> LaunchPlan {
    let n64 = u64::from(n);
    plan(
        "memwall_selftest_atomics",
        n.div_ceil(128).max(1),
        128,
        0,
        vec![buf(0), buf(1), buf(2), buf(3), KernelArg::U32(n)],
        vec![read("in", n64 * 4, 4), write("hist", 64, 4), write("sums", 4, 4), write("maxima", 4, 4)],
    )
}

/// For `n` f32 inputs: f16 and bf16 bits (round to nearest even), and in
/// `back` (2n x `f32`) each converted back.
pub fn convert_plan(n: u32) -> LaunchPlan {
    let n64 = u64::from(n);
    plan(
        "memwall_selftest_convert",
        n.div_ceil(128).max(1),
        128,
        0,
        vec![buf(0), buf(1), buf(2), buf(3), KernelArg::U32(n)],
        vec![read("in", n64 * 4, 4), write("h", n64 * 2, 2), write("b", n64 * 2, 2), write("back", n64 * 8, 4)],
    )
}

/// One plan per self-test entry, for the signature tests.
pub(crate) fn sample_plans() -> Vec<LaunchPlan> {
    vec![
        shfl_plan(1, Shfl::Xor, 1, 32),
        vote_plan(1),
        block_sum_plan(1),
        mma_plan(false),
        ldmatrix_plan(4, true),
        cp_async_plan(),
        smem_index_plan(64, 3),
        bad_plan(Bad::DivergentBarrier, 32),
        atomics_plan(1),
        convert_plan(1),
    ]
}
