//! The interposer end to end: the C programs of `tests/c/` built with
//! mpicc, run with `mpirun -np 2` and `-np 4` with and without
//! `LD_PRELOAD=libmemwall_mpi.so`. Each program checks itself against the
//! library's own PMPI calls; the runs must also print the same results, and
//! `MEMWALL_MPI_STATS` must show that the interposer did the work.

mod support;

use std::process::Command;

use support::{mpi_or_skip, App, Mpi, Opts, Run};

/// Runs `prog` without and with the interposer; both must pass and print
/// the same stable output; every rank of the interposed run must report
/// handled calls and packed bytes.
fn both_ways(mpi: &Mpi, np: usize, prog: &str, args: &[&str], pass: &str) -> (Run, Run) {
    let plain = mpi.run(np, prog, args, &Opts::default());
    plain.expect_pass(&format!("{prog} -np {np} without the interposer"), pass);
    assert!(plain.stats().is_empty(), "no stats without the interposer:\n{}", plain.stderr);
    let ours = mpi.run(np, prog, args, &Opts::interposed());
    ours.expect_pass(&format!("{prog} -np {np} with the interposer"), pass);
    assert_eq!(plain.stable_stdout(), ours.stable_stdout(), "{prog} -np {np}: outputs differ");
    let stats = ours.stats();
    assert_eq!(stats.len(), np, "one stats line per rank:\n{}", ours.stderr);
    for (r, s) in stats.iter().enumerate() {
        assert_eq!(s.rank, r as i64);
        assert!(s.handled > 0 && s.packed_bytes > 0, "rank {r} handled nothing: {s:?}");
        assert_eq!(s.fallbacks, 0, "rank {r} fell back: {s:?}\n{}", ours.stderr);
    }
    (plain, ours)
}

#[test]
fn library_loads_into_processes_without_mpi() {
    let Some(mpi) = mpi_or_skip("library_loads_into_processes_without_mpi") else { return };
    // mpirun itself runs with the preload; so must any plain program.
    let st = Command::new("/bin/sh").args(["-c", "exit 0"]).env("LD_PRELOAD", &mpi.lib).status().expect("sh");
    assert!(st.success(), "LD_PRELOAD into /bin/sh failed");
    // Every MPI symbol the library references is weak (else the loader
    // refuses it in processes without libmpi under -z now).
    if let Ok(o) = Command::new("nm").args(["-D", "--undefined-only"]).arg(&mpi.lib).output() {
        let text = String::from_utf8_lossy(&o.stdout);
        let strong: Vec<&str> = text
            .lines()
            .filter(|l| l.split_whitespace().next() == Some("U"))
            .filter(|l| l.contains("MPI_") || l.contains("ompi_") || l.contains("mpich"))
            .collect();
        assert!(strong.is_empty(), "strong MPI references: {strong:?}");
        assert!(text.contains("PMPI_Type_get_envelope"), "nm output lacks the shim's references:\n{text}");
    }
}

#[test]
fn pack_unpack_match_the_library_np2() {
    let Some(mpi) = mpi_or_skip("pack_unpack_match_the_library_np2") else { return };
    let (_, ours) = both_ways(mpi, 2, "pack_table", &[], "pack_table: PASS");
    // Every table type but darray is taken over; darray passes through.
    assert!(ours.stdout.contains("darray_passthrough"));
    for s in ours.stats() {
        assert!(s.passthrough > 0, "the darray calls pass through: {s:?}");
    }
    // Open MPI refuses a pack into too small a buffer (MPICH 4.0 does not;
    // either way the program checked that the interposer answers alike).
    if mpi.open_mpi {
        assert!(
            !ours.stdout.contains("short_pack_error_class=0\n"),
            "a short pack succeeded under Open MPI:\n{}",
            ours.stdout
        );
    }
}

#[test]
fn point_to_point_np2() {
    let Some(mpi) = mpi_or_skip("point_to_point_np2") else { return };
    let (_, ours) = both_ways(mpi, 2, "p2p", &[], "p2p: PASS");
    assert!(ours.stdout.contains("threads: ran"), "MPI_THREAD_MULTIPLE test did not run:\n{}", ours.stdout);
}

#[test]
fn point_to_point_np4() {
    let Some(mpi) = mpi_or_skip("point_to_point_np4") else { return };
    both_ways(mpi, 4, "p2p", &["500"], "p2p: PASS");
}

#[test]
fn halo_exchange_np2() {
    let Some(mpi) = mpi_or_skip("halo_exchange_np2") else { return };
    both_ways(mpi, 2, "halo3d", &["check", "12", "3"], "halo3d: PASS");
}

#[test]
fn halo_exchange_np4() {
    let Some(mpi) = mpi_or_skip("halo_exchange_np4") else { return };
    both_ways(mpi, 4, "halo3d", &["check", "10", "3"], "halo3d: PASS");
}

/// Host messages below `MEMWALL_MPI_HOST_MIN_BYTES` go to the library
/// (counted as passthroughs); those at or above it are carried. Faces of the
/// halo are N*N doubles: 288 B at N=6, 4608 B at N=24.
#[test]
fn small_host_messages_go_to_the_library() {
    let Some(mpi) = mpi_or_skip("small_host_messages_go_to_the_library") else { return };
    let cutoff = Opts::interposed_with_defaults().with("MEMWALL_MPI_HOST_MIN_BYTES", "4096");
    let small = mpi.run(2, "halo3d", &["check", "6", "2"], &cutoff);
    small.expect_pass("halo3d N=6 under a 4 KiB cutoff", "halo3d: PASS");
    for s in small.stats() {
        // (`handled` still counts the type commits and frees.)
        assert!(s.packed_bytes == 0 && s.passthrough >= 12, "all small: {s:?}");
    }
    let large = mpi.run(2, "halo3d", &["check", "24", "2"], &cutoff);
    large.expect_pass("halo3d N=24 under a 4 KiB cutoff", "halo3d: PASS");
    let stats = large.stats();
    assert_eq!(stats.len(), 2, "{}", large.stderr);
    for s in stats {
        assert!(s.handled > 0 && s.packed_bytes >= 2 * 6 * 4608, "all carried: {s:?}");
    }
}

/// A rank without the interposer (disabled) talks to one with it: the
/// packed bytes on the wire are the library's packed format.
#[test]
fn interposed_and_plain_ranks_interoperate() {
    let Some(mpi) = mpi_or_skip("interposed_and_plain_ranks_interoperate") else { return };
    let plain = App {
        np: 1,
        argv: vec![
            "env".into(),
            "MEMWALL_MPI_DISABLE=1".into(),
            mpi.program("p2p").display().to_string(),
            "200".into(),
        ],
    };
    let ours = App::new(1, "p2p", &["200"]);
    let r = mpi.run_mpmd(&[plain, ours], &Opts::interposed());
    r.expect_pass("mixed p2p", "p2p: PASS");
    let stats = r.stats();
    assert_eq!(stats.len(), 1, "only the interposed rank reports:\n{}", r.stderr);
    assert!(stats[0].handled > 0);
}

#[test]
fn disable_is_a_pure_passthrough() {
    let Some(mpi) = mpi_or_skip("disable_is_a_pure_passthrough") else { return };
    let r = mpi.run(2, "pack_table", &[], &Opts::interposed().with("MEMWALL_MPI_DISABLE", "1"));
    r.expect_pass("disabled pack_table", "pack_table: PASS");
    assert!(r.stats().is_empty(), "disabled: no stats\n{}", r.stderr);
}

#[test]
fn bad_settings_never_crash() {
    let Some(mpi) = mpi_or_skip("bad_settings_never_crash") else { return };
    let garbage = std::env::temp_dir().join(format!("memwall-mpi-garbage-profile-{}", std::process::id()));
    std::fs::write(&garbage, "not a profile\n\u{0}\u{1}").expect("write");
    for (k, v) in [
        ("MEMWALL_MPI_METHOD", "carrier-pigeon"),
        ("MEMWALL_MPI_PROFILE", "/nonexistent/memwall/profile"),
        ("MEMWALL_MPI_PROFILE", garbage.to_str().expect("utf-8 path")),
        ("MEMWALL_MPI_HOST_MIN_BYTES", "lots"),
        ("MEMWALL_PROFILE", "/nonexistent/memwall/machine-profile.toml"),
        ("MEMWALL_PROFILE", garbage.to_str().expect("utf-8 path")),
    ] {
        let r = mpi.run(2, "halo3d", &["check", "6", "2"], &Opts::interposed().with(k, v));
        r.expect_pass(&format!("halo3d with {k}={v}"), "halo3d: PASS");
        assert!(r.stderr.contains("memwall-mpi: "), "a warning for {k}={v}:\n{}", r.stderr);
        assert!(r.stats().iter().all(|s| s.handled > 0));
    }
    let _ = std::fs::remove_file(garbage);
}

#[test]
fn measure_writes_a_profile_the_model_reads() {
    let Some(mpi) = mpi_or_skip("measure_writes_a_profile_the_model_reads") else { return };
    let path = std::env::temp_dir().join(format!("memwall-mpi-profile-{}", std::process::id()));
    let p = path.to_str().expect("utf-8 path");
    let r = mpi.run(2, "measure", &[p, "262144"], &Opts { preload: true, ..Opts::default() });
    r.expect_pass("measure", "measure: wrote");
    let text = std::fs::read_to_string(&path).expect("profile written");
    let profile = memwall_mpi::model::Profile::parse(&text).expect("the model parses the profile");
    assert!(profile.has(memwall_mpi::model::Quantity::MpiHost), "{text}");
    let t = profile.time(memwall_mpi::model::Quantity::MpiHost, 100_000).expect("interpolated");
    assert!(t > 0.0 && t < 1.0, "{t}");
    // The interposer loads it without complaint.
    let run = mpi.run(2, "halo3d", &["check", "6", "2"], &Opts::interposed().with("MEMWALL_MPI_PROFILE", p));
    run.expect_pass("halo3d with the measured profile", "halo3d: PASS");
    assert!(!run.stderr.contains("profile"), "{}", run.stderr);
    // With `memwall measure`'s machine profile beside it, too.
    let machine = std::env::temp_dir().join(format!("memwall-machine-profile-{}.toml", std::process::id()));
    std::fs::write(&machine, "h2d_gbps = 20\nd2h_gbps = 20\ngpu_pack_gbps_64 = 800\ngpu_pack_mapped_gbps = 9\n")
        .expect("write");
    let opts = Opts::interposed().with("MEMWALL_MPI_PROFILE", p).with("MEMWALL_PROFILE", machine.to_str().unwrap());
    let run = mpi.run(2, "halo3d", &["check", "6", "2"], &opts);
    run.expect_pass("halo3d with both profiles", "halo3d: PASS");
    assert!(!run.stderr.contains("profile"), "{}", run.stderr);
    let _ = std::fs::remove_file(machine);
    let _ = std::fs::remove_file(path);
}

#[test]
fn debug_names_the_types_left_to_the_library() {
    let Some(mpi) = mpi_or_skip("debug_names_the_types_left_to_the_library") else { return };
    let r = mpi.run(2, "pack_table", &[], &Opts::interposed().with("MEMWALL_MPI_DEBUG", "1"));
    r.expect_pass("pack_table with debug", "pack_table: PASS");
    let left: Vec<&str> = r.stderr.lines().filter(|l| l.contains("left to the library")).collect();
    assert_eq!(left.len(), 2, "darray only, once per rank:\n{}", r.stderr);
}
