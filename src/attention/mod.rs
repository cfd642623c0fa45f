//! Fused attention: FlashAttention-2-style prefill (forward) and decode over
//! a paged KV cache, on the GPU, the emulator and the CPU.
//!
//! Prefill: f16/bf16, head dims 64, 128 and 256, causal or not, GQA/MQA, explicit
//! strides, variable-length batches, log-sum-exp per row ([`PrefillShape`],
//! [`prefill_plan`], [`prefill`] on the CPU, [`prefill_reference`] in f64).
//!
//! Decode: one query token per sequence against a paged KV cache with any
//! page size, GQA, split-KV with a log-sum-exp merge ([`DecodeShape`],
//! [`decode_plans`], [`decode`], [`decode_reference`]).

mod cpu;
mod decode;
mod device;
mod prefill;
mod shape;

#[cfg(test)]
mod test;

pub use cpu::{prefill, prefill_reference};
#[cfg(feature = "emu")]
pub use decode::decode_emu;
pub use decode::{decode, decode_plans, decode_reference, DecodeShape, DECODE_HEAD_CHUNK, DECODE_HEAD_DIMS};
pub use device::{decode_gpu, prefill_gpu};
#[cfg(feature = "emu")]
pub use prefill::prefill_emu;
pub use prefill::{block_n, prefill_plan, BLOCK_M};
pub use shape::{PrefillShape, Strides, Varlen, PREFILL_HEAD_DIMS};

/// One plan per attention kernel entry, for the signature tests.
pub(crate) fn sample_plans() -> Vec<crate::gpu::LaunchPlan> {
    let mut plans = prefill::sample_plans();
    plans.extend(decode::sample_plans());
    plans
}
