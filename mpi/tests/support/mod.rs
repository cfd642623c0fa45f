//! Shared by the interposer's integration tests and its benchmark: finds
//! MPI, builds the C programs of `tests/c/` with mpicc, locates
//! `libmemwall_mpi.so` and runs `mpirun` with and without it.
//!
//! Without `mpicc`/`mpirun` (or with a library built without MPI) a test
//! prints `MEMWALL-SKIP ...` and passes, unless `MEMWALL_REQUIRE_MPI=1`, in
//! which case it fails.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Turns skips into failures.
pub const REQUIRE_ENV: &str = "MEMWALL_REQUIRE_MPI";

/// The C programs, built once per test binary.
pub const PROGRAMS: [&str; 5] = ["pack_table", "p2p", "halo3d", "bench_pack", "measure"];

/// What the tests run with.
#[derive(Debug)]
pub struct Mpi {
    /// `mpirun` (or MPICH's `mpiexec`).
    pub mpirun: PathBuf,
    /// Open MPI (else MPICH-style flags).
    pub open_mpi: bool,
    /// The interposer.
    pub lib: PathBuf,
    /// Where the C programs were built.
    pub bin: PathBuf,
}

enum Setup {
    Ready(Mpi),
    Skip(String),
    Broken(String),
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The `libmemwall_mpi.so` cargo built for this test or bench binary: in
/// its own `deps/` directory (always rebuilt with it), else the profile
/// directory above (`cargo build`'s copy, which `cargo test` does not refresh).
fn find_lib() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let deps = exe.parent().ok_or("test binary has no directory")?;
    let candidates = [deps.join("libmemwall_mpi.so"), deps.parent().unwrap_or(deps).join("libmemwall_mpi.so")];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| format!("libmemwall_mpi.so not found in {} or its parent", deps.display()))
}

/// The program the environment variable `var` names: a path, or a name
/// looked up on `PATH` (e.g. `MPICC=mpicc.mpich`).
fn named_by(var: &str) -> Option<PathBuf> {
    let v = std::env::var_os(var)?;
    let p = PathBuf::from(&v);
    if p.is_file() {
        Some(p)
    } else {
        which(v.to_str()?)
    }
}

fn setup() -> Setup {
    let mpicc = named_by("MPICC").or_else(|| which("mpicc"));
    let Some(mpicc) = mpicc else { return Setup::Skip("no mpicc on PATH (mpi/scripts/install-mpi.sh)".into()) };
    let mpirun = named_by("MPIRUN").or_else(|| which("mpirun")).or_else(|| which("mpiexec"));
    let Some(mpirun) = mpirun else {
        return Setup::Skip("no mpirun/mpiexec on PATH (or MPIRUN)".into());
    };
    if !memwall_mpi::interposer_built() {
        return Setup::Broken(format!(
            "{} exists but libmemwall_mpi.so was built without MPI; rebuild (cargo clean -p memwall-mpi)",
            mpicc.display()
        ));
    }
    let lib = match find_lib() {
        Ok(l) => l,
        Err(e) => return Setup::Broken(e),
    };
    let version =
        Command::new(&mpirun).arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let open_mpi = version.is_ok_and(|v| v.contains("Open MPI") || v.contains("OpenRTE"));
    let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("memwall-mpi-c");
    if let Err(e) = std::fs::create_dir_all(&bin) {
        return Setup::Broken(format!("creating {}: {e}", bin.display()));
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
    for p in PROGRAMS {
        let out = bin.join(p);
        let tmp = bin.join(format!("{p}.{}.tmp", std::process::id()));
        let r = Command::new(&mpicc)
            // MPICH's MPI_STATUSES_IGNORE is the pointer 1, which gcc's
            // -Wstringop-overflow mistakes for an empty array.
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-Wno-stringop-overflow", "-pthread"])
            .arg(src.join(format!("{p}.c")))
            .arg("-o")
            .arg(&tmp)
            .arg("-ldl")
            .output();
        match r {
            Ok(o) if o.status.success() => {
                if let Err(e) = std::fs::rename(&tmp, &out) {
                    return Setup::Broken(format!("{}: {e}", out.display()));
                }
            }
            Ok(o) => return Setup::Broken(format!("mpicc {p}.c failed:\n{}", String::from_utf8_lossy(&o.stderr))),
            Err(e) => return Setup::Broken(format!("running {}: {e}", mpicc.display())),
        }
    }
    Setup::Ready(Mpi { mpirun, open_mpi, lib, bin })
}

/// Whether `MEMWALL_REQUIRE_MPI=1`.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// MPI and the built programs, or `None` after printing why `test` skips.
///
/// # Panics
/// When MPI is there but broken, or missing with `MEMWALL_REQUIRE_MPI=1`.
pub fn mpi_or_skip(test: &str) -> Option<&'static Mpi> {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    match SETUP.get_or_init(setup) {
        Setup::Ready(m) => Some(m),
        Setup::Broken(why) => panic!("{test}: {why}"),
        Setup::Skip(why) if required() => panic!("{test}: {REQUIRE_ENV}=1 but {why}"),
        Setup::Skip(why) => {
            memwall::gpu::report_skip(test, why);
            None
        }
    }
}

/// One `mpirun`'s result.
#[derive(Debug)]
pub struct Run {
    /// Exit success.
    pub ok: bool,
    /// What rank 0 printed (and the others; the programs print from rank 0).
    pub stdout: String,
    /// Diagnostics and the stats lines.
    pub stderr: String,
}

/// One rank's `MEMWALL_MPI_STATS` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankStats {
    /// Rank.
    pub rank: i64,
    /// Calls handled.
    pub handled: u64,
    /// Bytes packed and unpacked.
    pub packed_bytes: u64,
    /// Calls passed through.
    pub passthrough: u64,
    /// Internal failures.
    pub fallbacks: u64,
}

impl Run {
    /// The stats lines, by rank.
    pub fn stats(&self) -> Vec<RankStats> {
        let mut v: Vec<RankStats> = self
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("memwall-mpi stats: rank "))
            .filter_map(|rest| {
                let mut it = rest.split_whitespace();
                let rank = it.next()?.parse().ok()?;
                let get = |k: &str| -> Option<u64> {
                    rest.split_whitespace().find_map(|f| f.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                };
                Some(RankStats {
                    rank,
                    handled: get("handled")?,
                    packed_bytes: get("packed_bytes")?,
                    passthrough: get("passthrough")?,
                    fallbacks: get("fallbacks")?,
                })
            })
            .collect();
        v.sort_by_key(|s| s.rank);
        v
    }

    /// Panics with both streams unless the run succeeded and printed `pass`.
    pub fn expect_pass(&self, what: &str, pass: &str) {
        assert!(
            self.ok && self.stdout.lines().any(|l| l.starts_with(pass)),
            "{what}: expected success and a line starting {pass:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
    }

    /// stdout without the lines that differ between runs (timings).
    pub fn stable_stdout(&self) -> String {
        self.stdout.lines().filter(|l| !l.contains("seconds=")).collect::<Vec<_>>().join("\n")
    }
}

/// One application context of an MPMD launch: ranks and command line.
#[derive(Debug, Clone)]
pub struct App {
    /// Ranks.
    pub np: usize,
    /// Program and arguments (the program is looked up in the build dir
    /// unless it contains a '/' or is `env`).
    pub argv: Vec<String>,
}

impl App {
    /// `np` ranks of `prog args...`.
    pub fn new(np: usize, prog: &str, args: &[&str]) -> Self {
        let mut argv = vec![prog.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        App { np, argv }
    }
}

/// How a run is set up.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// Preload the interposer.
    pub preload: bool,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Keep Open MPI's default single-copy mechanism (benchmarks); tests
    /// turn it off, which works in any container.
    pub fast_shm: bool,
    /// Time limit.
    pub timeout: Option<Duration>,
}

impl Opts {
    /// With the interposer and `MEMWALL_MPI_STATS=1`, carrying host
    /// messages of every size (`MEMWALL_MPI_HOST_MIN_BYTES=0`: the tests'
    /// messages are small, and the point is to exercise the interposer).
    pub fn interposed() -> Self {
        Opts::interposed_with_defaults().with("MEMWALL_MPI_HOST_MIN_BYTES", "0")
    }

    /// With the interposer and `MEMWALL_MPI_STATS=1`, default settings.
    pub fn interposed_with_defaults() -> Self {
        Opts { preload: true, env: vec![("MEMWALL_MPI_STATS".into(), "1".into())], ..Opts::default() }
    }

    /// Adds an environment variable.
    pub fn with(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

impl Mpi {
    /// Path of a built program.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// Runs one program on `np` ranks.
    pub fn run(&self, np: usize, prog: &str, args: &[&str], opts: &Opts) -> Run {
        self.run_mpmd(&[App::new(np, prog, args)], opts)
    }

    /// Runs application contexts side by side (`mpirun A : B`).
    pub fn run_mpmd(&self, apps: &[App], opts: &Opts) -> Run {
        // One MPI job at a time: the machine has few cores.
        static ONE: Mutex<()> = Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cmd = Command::new(&self.mpirun);
        if self.open_mpi {
            cmd.args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"]);
            if !opts.fast_shm {
                cmd.args(["--mca", "btl_vader_single_copy_mechanism", "none"]);
            }
            cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
            cmd.env("OMPI_MCA_rmaps_base_oversubscribe", "1");
        }
        let np_flag = if self.open_mpi { "-np" } else { "-n" };
        for (i, app) in apps.iter().enumerate() {
            if i > 0 {
                cmd.arg(":");
            }
            cmd.arg(np_flag).arg(app.np.to_string());
            if self.open_mpi && opts.preload {
                cmd.args(["-x", "LD_PRELOAD"]);
            }
            for (j, a) in app.argv.iter().enumerate() {
                if j == 0 && !a.contains('/') && a != "env" {
                    cmd.arg(self.program(a));
                } else {
                    cmd.arg(a);
                }
            }
        }
        if opts.preload {
            cmd.env("LD_PRELOAD", &self.lib);
        } else {
            cmd.env_remove("LD_PRELOAD");
        }
        for v in [
            "MEMWALL_MPI_DISABLE",
            "MEMWALL_MPI_STATS",
            "MEMWALL_MPI_METHOD",
            "MEMWALL_MPI_PROFILE",
            "MEMWALL_MPI_HOST_MIN_BYTES",
            "MEMWALL_MPI_DEBUG",
            "MEMWALL_PROFILE",
        ] {
            cmd.env_remove(v);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        run_with_timeout(cmd, opts.timeout.unwrap_or(Duration::from_secs(180)))
    }
}

fn run_with_timeout(mut cmd: Command, limit: Duration) -> Run {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let reader = |mut s: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for mpirun") {
            break st;
        }
        if start.elapsed() > limit && !timed_out {
            timed_out = true;
            // SAFETY: kill(2) on the pid of the child this function spawned.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = err.join().unwrap_or_default();
    if timed_out {
        stderr.push_str(&format!("\n[timed out after {limit:?}]\n"));
    }
    Run { ok: status.success() && !timed_out, stdout: out.join().unwrap_or_default(), stderr }
}
