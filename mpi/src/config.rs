//! The interposer's environment variables, read once at `MPI_Init`.
//!
//! | variable | effect |
//! | --- | --- |
//! | `MEMWALL_MPI_DISABLE=1` | pure passthrough: every call goes to the library untouched |
//! | `MEMWALL_MPI_STATS=1` | each rank prints its counts at `MPI_Finalize` (stderr) |
//! | `MEMWALL_MPI_METHOD=device\|mapped\|staged` | force how device buffers travel (default: the model) |
//! | `MEMWALL_MPI_PROFILE=path` | the measured profile the model reads (see [`crate::model`]) |
//! | `MEMWALL_PROFILE=path` | `memwall measure`'s machine profile, filling what the first lacks (read at `MPI_Init`) |
//! | `MEMWALL_MPI_DEBUG=1` | say on stderr why a committed type is left to the library |
//! | `MEMWALL_MPI_HOST_MIN_BYTES=n` | host-buffer sends and receives of fewer packed bytes go to the library (default: [`default_host_min_bytes`]) |
//!
//! # The host cutoff
//! Carrying a host message costs an extra copy (the library copies the
//! packed bytes into its transport, where its own path packs straight into
//! it) and per-message bookkeeping (~0.15 us here). Below a size that only
//! pays when the library's own pack is slow. Measured on this project's
//! 2-core VM (3-D halo, `cargo bench -p memwall-mpi --bench interposer`):
//! with Open MPI 4.1 the interposer lost at 512 B faces (0.46x) and broke
//! even or won from 2 KiB; with MPICH 4.0, whose pack engine is as fast as
//! memwall's, it lost up to 32 KiB faces (0.7-0.9x) and won at 128 KiB
//! (1.3x). `MPI_Pack`/`MPI_Unpack` and device buffers are not affected.

use crate::model::Method;

/// Disables the interposer.
pub const DISABLE_ENV: &str = "MEMWALL_MPI_DISABLE";
/// Prints per-rank counts at `MPI_Finalize`.
pub const STATS_ENV: &str = "MEMWALL_MPI_STATS";
/// Forces the device-buffer method.
pub const METHOD_ENV: &str = "MEMWALL_MPI_METHOD";
/// Path of the measured profile.
pub const PROFILE_ENV: &str = "MEMWALL_MPI_PROFILE";
/// Explains passthroughs of committed types.
pub const DEBUG_ENV: &str = "MEMWALL_MPI_DEBUG";
/// Smallest packed host message the interposer carries.
pub const HOST_MIN_BYTES_ENV: &str = "MEMWALL_MPI_HOST_MIN_BYTES";

/// The host cutoff for the MPI this library was built against (see the
/// module docs): 64 KiB for MPICH and its derivatives, 2 KiB otherwise.
pub fn default_host_min_bytes() -> usize {
    match crate::built_with() {
        Some(name) if name.contains("MPICH") || name.contains("MVAPICH") => 64 << 10,
        _ => 2 << 10,
    }
}

/// The settings, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `MEMWALL_MPI_DISABLE=1`.
    pub disabled: bool,
    /// `MEMWALL_MPI_STATS=1`.
    pub stats: bool,
    /// `MEMWALL_MPI_DEBUG=1`.
    pub debug: bool,
    /// `MEMWALL_MPI_METHOD`, when valid.
    pub method: Option<Method>,
    /// `MEMWALL_MPI_PROFILE`, when set and not empty.
    pub profile: Option<String>,
    /// `MEMWALL_MPI_HOST_MIN_BYTES`, else [`default_host_min_bytes`].
    pub host_min_bytes: usize,
    /// Problems with the values (printed once by rank-local code, never fatal).
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            disabled: false,
            stats: false,
            debug: false,
            method: None,
            profile: None,
            host_min_bytes: default_host_min_bytes(),
            warnings: Vec::new(),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (the environment, or a test's map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let flag = |k: &str| get(k).is_some_and(|v| v.trim() == "1");
        let mut c = Config {
            disabled: flag(DISABLE_ENV),
            stats: flag(STATS_ENV),
            debug: flag(DEBUG_ENV),
            profile: get(PROFILE_ENV).filter(|p| !p.trim().is_empty()),
            ..Config::default()
        };
        if let Some(v) = get(HOST_MIN_BYTES_ENV).filter(|v| !v.trim().is_empty()) {
            match v.trim().parse::<usize>() {
                Ok(n) => c.host_min_bytes = n,
                Err(e) => c.warnings.push(format!("{HOST_MIN_BYTES_ENV}={v:?}: {e}; using {} bytes", c.host_min_bytes)),
            }
        }
        if let Some(m) = get(METHOD_ENV).filter(|m| !m.trim().is_empty()) {
            match m.parse::<Method>() {
                Ok(method) => c.method = Some(method),
                Err(e) => c.warnings.push(format!("{METHOD_ENV}: {e}; using the model")),
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Config {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_when_unset() {
        let c = parse(&[]);
        assert_eq!(c, Config::default());
    }

    #[test]
    fn flags_need_exactly_one() {
        let c = parse(&[(DISABLE_ENV, "1"), (STATS_ENV, "yes"), (DEBUG_ENV, " 1 ")]);
        assert!(c.disabled);
        assert!(!c.stats);
        assert!(c.debug);
    }

    #[test]
    fn method_is_parsed_or_warned() {
        assert_eq!(parse(&[(METHOD_ENV, "mapped")]).method, Some(Method::Mapped));
        let bad = parse(&[(METHOD_ENV, "carrier-pigeon")]);
        assert_eq!(bad.method, None);
        assert_eq!(bad.warnings.len(), 1);
        assert!(bad.warnings[0].contains("carrier-pigeon"), "{:?}", bad.warnings);
    }

    #[test]
    fn host_cutoff_is_parsed_or_warned() {
        assert_eq!(parse(&[]).host_min_bytes, default_host_min_bytes());
        assert_eq!(parse(&[(HOST_MIN_BYTES_ENV, " 0 ")]).host_min_bytes, 0);
        assert_eq!(parse(&[(HOST_MIN_BYTES_ENV, "65536")]).host_min_bytes, 65536);
        let bad = parse(&[(HOST_MIN_BYTES_ENV, "-5")]);
        assert_eq!(bad.host_min_bytes, default_host_min_bytes());
        assert!(bad.warnings.len() == 1 && bad.warnings[0].contains("\"-5\""), "{:?}", bad.warnings);
    }

    #[test]
    fn empty_profile_is_none() {
        assert_eq!(parse(&[(PROFILE_ENV, " ")]).profile, None);
        assert_eq!(parse(&[(PROFILE_ENV, "/tmp/p")]).profile.as_deref(), Some("/tmp/p"));
    }
}
