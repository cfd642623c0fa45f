//! The interposer's process state, alive from `MPI_Init` to `MPI_Finalize`,
//! and [`intercept`], the guard every entry point runs its work in.

use std::cell::Cell;
use std::ffi::c_int;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::abi::{self, Handle, RawDatatype};
use crate::config::Config;
use crate::decode;
use crate::model::{Model, Profile};
use crate::pool::Pool;
use crate::requests::Requests;
use crate::shim::{self, Handles, MpiTypes};
use crate::stats::Stats;
use crate::types::{Entry, TypeCache};

/// Everything the interposer keeps.
#[derive(Debug)]
pub struct State {
    /// Settings from the environment.
    pub config: Config,
    /// The device-buffer method model.
    pub model: Model,
    /// The library's fixed handles.
    pub handles: Handles,
    /// Cached committed types.
    pub types: TypeCache,
    /// Pending non-blocking operations.
    pub requests: Requests,
    /// Counters.
    pub stats: Stats,
    /// Packed-message buffers.
    pub pool: Pool,
}

static STATE: OnceLock<State> = OnceLock::new();
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The state while the interposer is active (initialised, not disabled,
/// not finalised).
pub fn active() -> Option<&'static State> {
    if ACTIVE.load(Ordering::Acquire) {
        STATE.get()
    } else {
        None
    }
}

/// Prints one line on stderr.
pub fn warn(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "memwall-mpi: {msg}");
}

/// Called after the library's `MPI_Init*` succeeded: reads the settings and
/// turns the interposer on, unless disabled or the library's symbols are
/// not reachable from the shim (then everything passes through).
pub fn start() {
    let config = Config::from_env();
    if config.disabled {
        return;
    }
    if !shim::ready() {
        warn("the MPI library's PMPI symbols are not visible to the interposer; passing every call through");
        return;
    }
    for w in &config.warnings {
        warn(w);
    }
    let profile = config.profile.as_deref().and_then(|path| match std::fs::read_to_string(path) {
        Ok(text) => Profile::parse(&text).map_err(|e| warn(&format!("profile {path}: {e}; using defaults"))).ok(),
        Err(e) => {
            warn(&format!("profile {path}: {e}; using defaults"));
            None
        }
    });
    let profile = with_machine_profile(profile);
    let model = Model { profile, forced: config.method };
    let state = State {
        config,
        model,
        handles: Handles::load(),
        types: TypeCache::default(),
        requests: Requests::default(),
        stats: Stats::default(),
        pool: Pool::new(),
    };
    if STATE.set(state).is_ok() {
        ACTIVE.store(true, Ordering::Release);
    }
}

/// Fills what the 2-rank profile lacks from `memwall measure`'s machine
/// profile (`MEMWALL_PROFILE`, else the default path), when there is one.
/// A missing default file is silent; a named or unreadable one warns.
fn with_machine_profile(profile: Option<Profile>) -> Option<Profile> {
    use memwall::profile::{Profile as Machine, PROFILE_ENV};
    let named = std::env::var_os(PROFILE_ENV).filter(|p| !p.is_empty());
    let path = named.clone().map(std::path::PathBuf::from).unwrap_or_else(Machine::default_path);
    if !path.exists() {
        if named.is_some() {
            warn(&format!("machine profile {} ({PROFILE_ENV}): not found; not used", path.display()));
        }
        return profile;
    }
    match Machine::load(&path) {
        Ok(machine) => {
            let mut p = profile.unwrap_or_default();
            p.fill_from_machine(&machine);
            Some(p)
        }
        Err(e) => {
            warn(&format!("machine profile {}: {e}; not used", path.display()));
            profile
        }
    }
}

/// Called before the library's `MPI_Finalize`: completes requests the user
/// freed, prints the counts and turns the interposer off.
pub fn finish() {
    let Some(s) = active() else { return };
    s.requests.progress_detached(true, &s.stats);
    if s.config.stats {
        let rank = shim::world_rank().unwrap_or(-1);
        let _ = std::io::stderr().lock().write_all(s.stats.line(rank).as_bytes());
    }
    ACTIVE.store(false, Ordering::Release);
    s.types.clear();
}

impl State {
    /// Decodes and caches committed handle `t` (or notes it unsupported).
    pub fn commit(&self, t: RawDatatype) -> bool {
        let h = t.to_u64();
        match decode::decode(&MpiTypes, h).and_then(|ty| Entry::new(&ty)) {
            Ok(e) => {
                self.types.insert(h, e);
                self.stats.types_supported.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(why) => {
                self.types.remove(h);
                self.stats.types_unsupported.fetch_add(1, Ordering::Relaxed);
                if self.config.debug {
                    warn(&format!("type {h:#x} left to the library: {why}"));
                }
                false
            }
        }
    }
}

/// One intercepted call in progress. [`Call::commit`] marks the point after
/// which the library has been called: a failure past it must not send the
/// call to the library a second time.
#[derive(Debug, Default)]
pub struct Call {
    committed: Cell<bool>,
}

impl Call {
    /// Marks that the library is about to be called on this call's behalf.
    pub fn commit(&self) {
        self.committed.set(true);
    }
}

/// Runs `work` for an intercepted call. `work` returns `Some(rc)` when it
/// handled the call, `None` to pass it through; a panic before
/// [`Call::commit`] passes it through, after it returns `MPI_ERR_INTERN`.
/// Before `MPI_Init`, after `MPI_Finalize` and when disabled, `fwd` runs
/// directly.
pub fn intercept(fwd: impl FnOnce() -> c_int, work: impl FnOnce(&'static State, &Call) -> Option<c_int>) -> c_int {
    let Some(s) = active() else { return fwd() };
    let call = Call::default();
    match catch_unwind(AssertUnwindSafe(|| work(s, &call))) {
        Ok(Some(rc)) => rc,
        Ok(None) => {
            s.stats.pass();
            fwd()
        }
        Err(_) => {
            s.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
            if call.committed.get() {
                abi::ERR_INTERN
            } else {
                s.stats.pass();
                fwd()
            }
        }
    }
}

/// Runs `f` and swallows a panic (for bookkeeping after a library call that
/// must keep the library's return code).
pub fn guard(f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        if let Some(s) = active() {
            s.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
    }
}
