//! How GPU tests decide to run or skip.
//!
//! A GPU test calls [`gpu_or_skip`]. On a machine without a usable CUDA device
//! it prints one `MEMWALL-SKIP` line with the reason and returns `None`, so the
//! test passes vacuously, unless `MEMWALL_REQUIRE_GPU=1` is set, in which case
//! it panics with the reason: the GPU suite sets it so that a missing driver
//! fails instead of hiding behind skips.

use std::io::Write;

use crate::gpu::device::Gpu;

/// The environment variable that turns a skip into a failure.
pub const REQUIRE_GPU_ENV: &str = "MEMWALL_REQUIRE_GPU";

/// Whether `MEMWALL_REQUIRE_GPU=1` is set.
pub fn gpu_required() -> bool {
    std::env::var(REQUIRE_GPU_ENV).is_ok_and(|v| v == "1")
}

/// Device 0, or `None` after printing why the test `test` is skipped.
///
/// # Panics
/// When no device can be opened and `MEMWALL_REQUIRE_GPU=1` is set.
pub fn gpu_or_skip(test: &str) -> Option<Gpu> {
    match Gpu::new(0) {
        Ok(gpu) => Some(gpu),
        Err(e) if gpu_required() => panic!("{test}: {REQUIRE_GPU_ENV}=1 but no GPU: {e}"),
        Err(e) => {
            report_skip(test, &e);
            None
        }
    }
}

/// Prints `MEMWALL-SKIP <test>: <reason>` to stderr, visible even under the
/// test harness: it writes to the stream directly rather than with
/// `eprintln!`, which the harness captures and hides for passing tests.
pub fn report_skip(test: &str, reason: &dyn std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "MEMWALL-SKIP {test}: {reason}");
}
