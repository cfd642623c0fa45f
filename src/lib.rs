//! memwall breaks the GPU memory wall for LLM and mixture-of-experts work:
//! hand-written CUDA kernels wrapped in safe Rust, a three-tier memory
//! manager (crate `memwall-tiers`) and an MPI datatype interposer (crate
//! `memwall-mpi`).
//!
//! Everything builds and runs without CUDA: [`gpu::Gpu::new`] returns
//! [`Error::NoDriver`] on such a machine, and every kernel has a CPU path.
//! See `docs/ARCHITECTURE.md` for the map of the code.

pub mod attention;
pub mod datatype;
pub mod dtype;
#[cfg(feature = "emu")]
pub mod emu;
pub mod error;
pub mod gpu;
pub mod info;
pub mod moe;
mod parallel;
pub mod profile;
pub mod selftest;
pub mod strided;
pub mod trace;

pub use error::{Error, Result};

/// One launch plan for every kernel entry in the embedded PTX, built with no
/// CUDA. Tests check each against the compiled `.entry` signature, and that
/// no entry is left without one.
pub fn sample_plans() -> Vec<gpu::LaunchPlan> {
    let mut plans = strided::sample_plans();
    plans.extend(datatype::sample_plans());
    plans.extend(moe::sample_plans());
    plans.extend(attention::sample_plans());
    plans.extend(selftest::sample_plans());
    plans
}
