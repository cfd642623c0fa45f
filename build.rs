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
                // A plain message and exit code, not a panic: this is the
                // user's fix to make, not a bug in the build script.
                eprintln!("{msg}");
                std::process::exit(1);
            }
            let text = fs::read_to_string(root.join("ptx/manifest")).expect("read ptx/manifest");
            let m = manifest::parse(&text).expect("ptx/manifest parses (checked above)");
            (root.join("ptx"), format!("committed ptx/ from nvcc {}", m.nvcc))
        }
    };
    write_module_table(&out, &ptx_dir, &stems, &origin);
    if env::var_os("CARGO_FEATURE_EMU").is_some() {
        build_emulator(&root, &out, &ptx_dir, &stems);
    }
}

/// The `.entry` names of a PTX file, in order.
fn entry_names(ptx: &str) -> Vec<String> {
    ptx.split(".entry ").skip(1).filter_map(|rest| rest.split('(').next()).map(|name| name.trim().to_string()).collect()
}

/// Compiles the CPU emulator (kernels/emu) and every kernel source for it
/// into the static library `memwall_emu`, with one registry of entries.
fn build_emulator(root: &Path, out: &Path, ptx_dir: &Path, stems: &[String]) {
    let gen = out.join("emu");
    fs::create_dir_all(&gen).expect("create OUT_DIR/emu");
    let mut registry = String::from("#include \"memwall_emu/registry.h\"\n#include <string.h>\n");
    let mut lookup = String::new();
    let mut sources = Vec::new();
    for stem in stems {
        let ptx = fs::read_to_string(ptx_dir.join(format!("{stem}.ptx"))).expect("read PTX");
        let entries = entry_names(&ptx);
        let mut tu =
            format!("#include {:?}\n#include \"memwall_emu/registry.h\"\n", root.join(format!("kernels/{stem}.cu")));
        let _ = writeln!(tu, "static const memwall_emu::KernelEntry kEntries[] = {{");
        for e in &entries {
            let _ = writeln!(tu, "    MEMWALL_EMU_ENTRY({e}),");
        }
        let _ = writeln!(tu, "}};");
        let _ = writeln!(
            tu,
            "extern \"C\" const memwall_emu::KernelEntry* memwall_emu_module_{stem}(unsigned* n) {{ *n = {}; return kEntries; }}",
            entries.len()
        );
        let path = gen.join(format!("{stem}.cpp"));
        fs::write(&path, tu).expect("write emulator TU");
        sources.push(path);
        let _ =
            writeln!(registry, "extern \"C\" const memwall_emu::KernelEntry* memwall_emu_module_{stem}(unsigned*);");
        let _ =
            writeln!(lookup, "  if (strcmp(module, {stem:?}) == 0) return pick(memwall_emu_module_{stem}, kernel);");
    }
    let _ = write!(
        registry,
        "static const memwall_emu::KernelEntry* pick(const memwall_emu::KernelEntry* (*f)(unsigned*), const char* kernel) {{\n\
         \x20 unsigned n = 0;\n  const memwall_emu::KernelEntry* e = f(&n);\n\
         \x20 for (unsigned i = 0; i < n; ++i) if (strcmp(e[i].name, kernel) == 0) return &e[i];\n  return nullptr;\n}}\n\
         extern \"C\" const memwall_emu::KernelEntry* memwall_emu_find(const char* module, const char* kernel) {{\n\
         {lookup}  return nullptr;\n}}\n"
    );
    let reg_path = gen.join("registry.cpp");
    fs::write(&reg_path, registry).expect("write emulator registry");
    sources.push(reg_path);

    let emu = root.join("kernels/emu");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .define("MEMWALL_EMU", "1")
        .include(emu.join("include"))
        .include(root.join("kernels/include"))
        .flag("-include")
        .flag("memwall_emu/cuda_emu.h")
        .flag("-fno-strict-aliasing")
        .flag_if_supported("-Wno-unknown-pragmas")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(true)
        .file(emu.join("runtime.cpp"))
        .files(&sources);
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if target_arch != "x86_64" {
        panic!("the kernel emulator's fiber switch is written for x86_64; target is {target_arch}");
    }
    build.compile("memwall_emu");
    // The fiber switch is plain assembly, built without the C++ flags above.
    cc::Build::new().file(emu.join("switch_x86_64.S")).compile("memwall_emu_switch");
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
