//! Inline PTX lives only in kernels/include/memwall/prim/, next to its
//! emulated twin, so the emulator can compile every other kernel source.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "cu" || x == "cuh") {
            out.push(p);
        }
    }
}

#[test]
fn inline_ptx_only_in_two_body_primitives() {
    let Some(root) = common::repo_root() else {
        memwall::gpu::report_skip("inline_ptx_only_in_two_body_primitives", &"no source tree here");
        return;
    };
    let root = root.as_path();
    let prim = root.join("kernels/include/memwall/prim");
    let mut files = Vec::new();
    sources(&root.join("kernels"), &mut files);
    assert!(files.len() >= 3, "found kernel sources: {files:?}");
    let mut stray = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        let has_asm = text.lines().any(|l| {
            let code = l.split("//").next().unwrap_or("");
            code.contains("asm(") || code.contains("asm volatile") || code.contains("__asm__")
        });
        if f.starts_with(&prim) {
            if has_asm {
                assert!(text.contains("#ifdef MEMWALL_EMU"), "{} has inline PTX but no emulated body", f.display());
            }
        } else if has_asm {
            stray.push(f.strip_prefix(root).unwrap().display().to_string());
        }
    }
    assert!(stray.is_empty(), "inline PTX outside kernels/include/memwall/prim: {stray:?}");
}
