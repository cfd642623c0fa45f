//! Builds the MPI side of libmemwall_mpi.so.
//!
//! With an MPI compiler wrapper (`$MPICC`, else `mpicc` on `PATH`):
//! 1. reads its compile flags (`mpicc --showme:compile` for Open MPI,
//!    `mpicc -show` for MPICH and its derivatives);
//! 2. compiles and runs `csrc/probe.c`, which prints `mpi_abi.rs` (handle
//!    widths, `sizeof(MPI_Status)`, error codes, combiners) into `OUT_DIR`;
//! 3. compiles `csrc/shim.c` into a static library linked into the crate;
//! 4. sets `cfg(memwall_mpi)`, which turns the interposer on.
//!
//! Without one (or with `MEMWALL_MPI_NO_MPI=1`), it prints a cargo warning and
//! the library is built without the interposer: it defines no MPI symbol, so
//! preloading it changes nothing (a pure passthrough).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(memwall_mpi)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/probe.c");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-env-changed=MPICC");
    println!("cargo:rerun-if-env-changed=MEMWALL_MPI_NO_MPI");

    if env::var("MEMWALL_MPI_NO_MPI").is_ok_and(|v| v == "1") {
        println!("cargo:warning=memwall-mpi: MEMWALL_MPI_NO_MPI=1: building without the interposer (passthrough)");
        return;
    }
    let Some(mpicc) = find_mpicc() else {
        println!(
            "cargo:warning=memwall-mpi: no mpicc found (set MPICC or install MPI, e.g. mpi/scripts/install-mpi.sh): \
             libmemwall_mpi.so is built without the interposer (defines no MPI symbol: pure passthrough)"
        );
        return;
    };
    println!("cargo:rerun-if-changed={}", mpicc.display());
    match build_with(&mpicc) {
        Ok(implementation) => {
            println!("cargo:rustc-cfg=memwall_mpi");
            println!("cargo:rustc-env=MEMWALL_MPI_BUILT_WITH={implementation}");
        }
        Err(e) => println!(
            "cargo:warning=memwall-mpi: {} found but unusable ({e}); building without the interposer (passthrough)",
            mpicc.display()
        ),
    }
}

/// `$MPICC`, else `mpicc` on `PATH`. When there is none, every place it
/// could appear is registered with rerun-if-changed: a missing path makes
/// cargo rerun this script, so installing MPI later is picked up.
fn find_mpicc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("MPICC").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        return which(p.to_str()?);
    }
    which("mpicc")
}

fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    let mut candidates = Vec::new();
    for dir in env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return Some(p);
        }
        candidates.push(p);
    }
    for c in candidates {
        println!("cargo:rerun-if-changed={}", c.display());
    }
    None
}

/// The include and define flags of the MPI compiler wrapper.
fn compile_flags(mpicc: &Path) -> Result<Vec<String>, String> {
    let run = |arg: &str| -> Option<String> {
        let out = Command::new(mpicc).arg(arg).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // Open MPI prints just the flags; MPICH prints the whole command line.
    let (text, skip_first) = match run("--showme:compile") {
        Some(t) => (t, false),
        None => (run("-show").ok_or("neither `--showme:compile` nor `-show` worked")?, true),
    };
    let tokens: Vec<&str> = text.split_whitespace().skip(usize::from(skip_first)).collect();
    let mut flags = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        if (t == "-I" || t == "-isystem" || t == "-D") && i + 1 < tokens.len() {
            flags.push(t.to_string());
            flags.push(tokens[i + 1].to_string());
            i += 2;
            continue;
        }
        if t.starts_with("-I") || t.starts_with("-D") || t == "-pthread" {
            flags.push(t.to_string());
        }
        i += 1;
    }
    Ok(flags)
}

fn build_with(mpicc: &Path) -> Result<String, String> {
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let flags = compile_flags(mpicc)?;

    let mut shim = cc::Build::new();
    shim.file("csrc/shim.c").warnings(true).flag_if_supported("-std=c11");
    for f in &flags {
        shim.flag(f);
    }

    // The probe: compiled by the same compiler with the same flags, then run.
    let probe = out.join("memwall_mpi_probe");
    let mut cmd = shim.get_compiler().to_command();
    cmd.args(&flags).arg("csrc/probe.c").arg("-o").arg(&probe);
    let status = cmd.status().map_err(|e| format!("running the C compiler: {e}"))?;
    if !status.success() {
        return Err(format!("compiling csrc/probe.c failed ({status})"));
    }
    let output = Command::new(&probe).output().map_err(|e| format!("running the probe: {e}"))?;
    if !output.status.success() {
        return Err(format!("the probe failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    let abi = String::from_utf8(output.stdout).map_err(|e| e.to_string())?;
    std::fs::write(out.join("mpi_abi.rs"), &abi).map_err(|e| e.to_string())?;

    shim.try_compile("memwall_mpi_shim").map_err(|e| e.to_string())?;
    let implementation = abi
        .lines()
        .find_map(|l| l.strip_prefix("pub const IMPLEMENTATION: &str = \""))
        .and_then(|l| l.strip_suffix("\";"))
        .unwrap_or("MPI")
        .to_string();
    Ok(implementation)
}
