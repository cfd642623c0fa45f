//! The PTX manifest: which kernel sources and which nvcc produced the committed
//! `ptx/`. Shared by `build.rs` (refuses a stale `ptx/` when no nvcc is found)
//! and by `tests/ptx_manifest.rs` (fails CI on a stale `ptx/`), so both apply
//! the same rule. `scripts/regen-ptx.sh` writes the file.
//!
//! Format, one record a line (`#` starts a comment):
//! ```text
//! nvcc 13.0.88
//! source <sha256> kernels/strided_copy.cu
//! ptx <sha256> ptx/strided_copy.ptx
//! ```
//! Sources are every file under `kernels/` except `kernels/emu/` (the CPU
//! emulator does not feed the PTX), sorted by byte order of their paths.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The command that regenerates `ptx/` and the manifest.
pub const REGEN_COMMAND: &str = "scripts/regen-ptx.sh";

/// A parsed `ptx/manifest`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The nvcc release that produced the PTX, e.g. `13.0.88`.
    pub nvcc: String,
    /// Hash of every kernel source, by path relative to the repository root.
    pub sources: BTreeMap<String, String>,
    /// Hash of every committed PTX file, by path relative to the repository root.
    pub ptx: BTreeMap<String, String>,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the manifest text; errors name the offending line.
pub fn parse(text: &str) -> Result<Manifest, String> {
    let mut m = Manifest::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["nvcc", version] => m.nvcc = (*version).to_string(),
            ["source", hash, path] => {
                m.sources.insert((*path).to_string(), (*hash).to_string());
            }
            ["ptx", hash, path] => {
                m.ptx.insert((*path).to_string(), (*hash).to_string());
            }
            _ => return Err(format!("ptx/manifest line {}: cannot parse {line:?}", n + 1)),
        }
    }
    if m.nvcc.is_empty() {
        return Err("ptx/manifest has no `nvcc <version>` line".to_string());
    }
    Ok(m)
}

/// Every file under `root/kernels` that feeds the PTX, as sorted relative paths.
pub fn source_files(root: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    walk(root, &root.join("kernels"), &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let rel = relative(root, &path);
        if rel == "kernels/emu" {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

/// The kernel translation units: `kernels/*.cu`, as sorted file stems.
pub fn kernel_stems(root: &Path) -> io::Result<Vec<String>> {
    let mut stems = Vec::new();
    for entry in fs::read_dir(root.join("kernels"))? {
        let path: PathBuf = entry?.path();
        if path.extension().is_some_and(|e| e == "cu") {
            if let Some(stem) = path.file_stem() {
                stems.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    stems.sort();
    Ok(stems)
}

/// Checks the committed `ptx/` against the sources under `root`. Returns every
/// problem found (an empty list means fresh), each naming the file.
pub fn staleness(root: &Path) -> io::Result<Vec<String>> {
    let text = match fs::read_to_string(root.join("ptx/manifest")) {
        Ok(t) => t,
        Err(e) => return Ok(vec![format!("cannot read ptx/manifest: {e}")]),
    };
    let manifest = match parse(&text) {
        Ok(m) => m,
        Err(e) => return Ok(vec![e]),
    };
    let mut problems = Vec::new();
    let sources = source_files(root)?;
    for path in &sources {
        let hash = sha256_hex(&fs::read(root.join(path))?);
        match manifest.sources.get(path) {
            None => problems.push(format!("{path} is not in ptx/manifest (new source)")),
            Some(h) if *h != hash => problems.push(format!("{path} changed since ptx/ was generated")),
            Some(_) => {}
        }
    }
    for path in manifest.sources.keys() {
        if !sources.contains(path) {
            problems.push(format!("{path} is in ptx/manifest but no longer exists"));
        }
    }
    let stems = kernel_stems(root)?;
    let expected_ptx: Vec<String> = stems.iter().map(|s| format!("ptx/{s}.ptx")).collect();
    for path in &expected_ptx {
        match (manifest.ptx.get(path), fs::read(root.join(path))) {
            (None, _) => problems.push(format!("{path} is not in ptx/manifest")),
            (Some(_), Err(e)) => problems.push(format!("{path}: {e}")),
            (Some(h), Ok(bytes)) if *h != sha256_hex(&bytes) => {
                problems.push(format!("{path} was edited after generation"))
            }
            _ => {}
        }
    }
    for path in manifest.ptx.keys() {
        if !expected_ptx.contains(path) {
            problems.push(format!("{path} is in ptx/manifest but has no kernels/*.cu source"));
        }
    }
    Ok(problems)
}
