//! Kernel build: `kernels/*.cu` -> PTX for `compute_80`, embedded in the crate.
//!
//! With nvcc (found through `NVCC`, `CUDA_HOME/bin`, then `PATH`) every kernel
//! is compiled into `OUT_DIR` with the flags in `kernels/nvcc.flags`. Without
//! one, the committed `ptx/` is embedded after `ptx/manifest` proves it was
//! generated from the current sources; a stale `ptx/` is a build error naming
//! the command that regenerates it. `MEMWALL_USE_COMMITTED_PTX=1` skips nvcc.

#[path = "build/manifest.rs"]
mod manifest;

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=ptx");
    println!("cargo:rerun-if-changed=build/manifest.rs");
    for var in ["NVCC", "CUDA_HOME", "MEMWALL_USE_COMMITTED_PTX"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let stems = manifest::kernel_stems(&root).expect("cannot list kernels/*.cu");
    let use_committed = env::var("MEMWALL_USE_COMMITTED_PTX").is_ok_and(|v| v == "1");
    let nvcc = if use_committed { None } else { find_nvcc() };

    let stale = manifest::staleness(&root).expect("cannot read kernels/ or ptx/");
    let (ptx_dir, origin) = match nvcc {
        Some(nvcc) => {
            if !stale.is_empty() {
                println!(
                    "cargo:warning=committed ptx/ is stale ({}); built with {} instead; run {} before committing",
                    stale.join("; "),
                    nvcc.display(),
                    manifest::REGEN_COMMAND
                );
            }
            let dir = out.join("ptx");
            fs::create_dir_all(&dir).expect("cannot create OUT_DIR/ptx");
            let version = nvcc_version(&nvcc);
            for stem in &stems {
                compile(&root, &nvcc, stem, &dir.join(format!("{stem}.ptx")));
            }
            (dir, format!("built by nvcc {version}"))
        }
        None => {
            if !stale.is_empty() {
                let mut msg = String::from("\n\ncommitted ptx/ is stale and no nvcc was found:\n");
                for p in &stale {
                    let _ = writeln!(msg, "  - {p}");
                }
                let _ = writeln!(
                    msg,
                    "regenerate it with `{}` (installs the pinned nvcc from PyPI), \
                     or point NVCC / CUDA_HOME at an nvcc to compile the kernels at build time",
                    manifest::REGEN_COMMAND
                );
                panic!("{msg}");
            }
            let text = fs::read_to_string(root.join("ptx/manifest")).expect("read ptx/manifest");
            let m = manifest::parse(&text).expect("ptx/manifest parses (checked above)");
            (root.join("ptx"), format!("committed ptx/ from nvcc {}", m.nvcc))
        }
    };
    write_module_table(&out, &ptx_dir, &stems, &origin);
}

/// nvcc from `NVCC`, `CUDA_HOME/bin/nvcc`, or the first `nvcc` on `PATH`.
fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("NVCC").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        panic!("NVCC={} does not name a file", p.display());
    }
    if let Some(home) = env::var_os("CUDA_HOME").filter(|p| !p.is_empty()) {
        let p = Path::new(&home).join("bin/nvcc");
        if p.is_file() {
            return Some(p);
        }
    }
    env::split_paths(&env::var_os("PATH")?).map(|d| d.join("nvcc")).find(|p| p.is_file())
}

fn nvcc_version(nvcc: &Path) -> String {
    let out = Command::new(nvcc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", nvcc.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('V'))
        .map(|v| v.trim_end_matches(',').to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

fn nvcc_flags(root: &Path) -> Vec<String> {
    let text = fs::read_to_string(root.join("kernels/nvcc.flags")).expect("read kernels/nvcc.flags");
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

fn compile(root: &Path, nvcc: &Path, stem: &str, dst: &Path) {
    let out = Command::new(nvcc)
        .current_dir(root)
        .args(nvcc_flags(root))
        .arg(format!("kernels/{stem}.cu"))
        .arg("-o")
        .arg(dst)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
    if !out.status.success() {
        panic!(
            "nvcc failed on kernels/{stem}.cu:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Writes `OUT_DIR/ptx_modules.rs`: one `PtxModule` per kernel source.
fn write_module_table(out: &Path, ptx_dir: &Path, stems: &[String], origin: &str) {
    let mut src = String::new();
    let _ = writeln!(src, "/// Where the embedded PTX came from.");
    let _ = writeln!(src, "pub const PTX_ORIGIN: &str = {origin:?};");
    let _ = writeln!(src, "/// Every embedded PTX module, one per `kernels/*.cu`.");
    let _ = writeln!(src, "pub static MODULES: &[PtxModule] = &[");
    for stem in stems {
        let path = ptx_dir.join(format!("{stem}.ptx"));
        let path = path.to_str().expect("PTX path is UTF-8");
        let _ = writeln!(
            src,
            "    PtxModule {{ name: {stem:?}, source: \"kernels/{stem}.cu\", ptx: include_str!({path:?}) }},"
        );
    }
    let _ = writeln!(src, "];");
    fs::write(out.join("ptx_modules.rs"), src).expect("write OUT_DIR/ptx_modules.rs");
}
