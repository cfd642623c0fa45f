//! Helpers shared by integration tests.

use std::path::PathBuf;

/// The repository root: the source tree at build time, or the current
/// directory when the test binary was carried to another machine (the GPU
/// bundle runs from a copy of the repository). `None` when neither holds
/// the sources.
pub fn repo_root() -> Option<PathBuf> {
    [PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::env::current_dir().ok()?]
        .into_iter()
        .find(|p| p.join("ptx/manifest").is_file() && p.join("kernels").is_dir())
}
