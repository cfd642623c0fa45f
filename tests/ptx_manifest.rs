//! The committed `ptx/` must have been generated from the current kernels/.

#[path = "../build/manifest.rs"]
mod manifest;

mod common;

use common::repo_root as root;

#[test]
fn committed_ptx_is_fresh() {
    let Some(root) = root() else {
        memwall::gpu::report_skip("committed_ptx_is_fresh", &"no source tree here");
        return;
    };
    let problems = manifest::staleness(&root).unwrap();
    assert!(problems.is_empty(), "ptx/ is stale; run {}:\n  {}", manifest::REGEN_COMMAND, problems.join("\n  "));
}

#[test]
fn staleness_names_each_changed_file() {
    let Some(root) = root() else { return };
    let tmp = std::env::temp_dir().join(format!("memwall-manifest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy_dir(&root.join("kernels"), &tmp.join("kernels"));
    copy_dir(&root.join("ptx"), &tmp.join("ptx"));
    assert!(manifest::staleness(&tmp).unwrap().is_empty(), "a faithful copy is fresh");

    let cu = tmp.join("kernels/strided_copy.cu");
    let mut text = std::fs::read_to_string(&cu).unwrap();
    text.push_str("\n// edited\n");
    std::fs::write(&cu, text).unwrap();
    std::fs::write(tmp.join("kernels/new_kernel.cu"), "// new\n").unwrap();
    let problems = manifest::staleness(&tmp).unwrap().join("\n");
    assert!(problems.contains("kernels/strided_copy.cu changed"), "{problems}");
    assert!(problems.contains("kernels/new_kernel.cu is not in ptx/manifest"), "{problems}");
    assert!(problems.contains("ptx/new_kernel.ptx is not in ptx/manifest"), "{problems}");
    let _ = std::fs::remove_dir_all(&tmp);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}
