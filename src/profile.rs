//! The machine profile: this machine's measured bandwidths, which the MPI
//! interposer reads to choose how device buffers travel and the demo reads
//! to judge its pager. `memwall measure` writes it.
//!
//! Format: one `key = value` per line (a TOML subset), `#` comments; values
//! are numbers (GB/s unless the key says otherwise). Unknown keys are kept.
//! Keys written today:
//!
//! | key | meaning |
//! | --- | --- |
//! | `ddr_memcpy_gbps` | host memcpy, 64 MiB, one thread |
//! | `cpu_pack_gbps_<block>` | CPU datatype pack of 16 MiB in `<block>`-byte blocks |
//! | `nvme_read_gbps`, `nvme_write_gbps` | NVMe through the pager (fetch into DDR, write-back from DDR) |
//! | `h2d_gbps`, `d2h_gbps`, `d2d_gbps` | pinned host <-> device and device copies |
//! | `gpu_pack_gbps_<block>` | GPU datatype pack |
//! | `gpu_pack_mapped_gbps` | GPU pack (64 B blocks) straight into mapped pinned host memory |
//!
//! Readers: the MPI interposer (`memwall-mpi`) takes `h2d_gbps`,
//! `d2h_gbps`, `gpu_pack_gbps_*` and `gpu_pack_mapped_gbps` for its
//! device-buffer model when its own 2-rank profile lacks them; `memwall
//! demo` prints `nvme_read_gbps`/`nvme_write_gbps` beside the rates its
//! pager achieved. The pager itself makes no bandwidth-based choice yet.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The environment variable naming the profile file.
pub const PROFILE_ENV: &str = "MEMWALL_PROFILE";

/// Measured numbers by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// The values, sorted by key.
    pub values: BTreeMap<String, f64>,
}

impl Profile {
    /// `$MEMWALL_PROFILE`, else `$XDG_CACHE_HOME/memwall/profile.toml`
    /// (`~/.cache` when `XDG_CACHE_HOME` is unset; the temp dir when `HOME`
    /// is unset too).
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os(PROFILE_ENV).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        cache.join("memwall").join("profile.toml")
    }

    /// Parses the text; errors name the line.
    pub fn parse(text: &str) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| {
                Error::invalid("profile line", n + 1, format!("expected `key = value`, got {line:?}"))
            })?;
            let v: f64 = v.trim().parse().map_err(|_| {
                Error::invalid("profile value", format!("line {}: {}", n + 1, v.trim()), "not a number")
            })?;
            values.insert(k.trim().to_string(), v);
        }
        Ok(Profile { values })
    }

    /// Reads `path`; a missing file is an empty profile (safe defaults).
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(t) => Self::parse(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Profile::default()),
            Err(e) => Err(Error::invalid("profile", path.display(), e.to_string())),
        }
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# memwall machine profile, written by `memwall measure`\n");
        for (k, v) in &self.values {
            let _ = writeln!(s, "{k} = {v:.3}");
        }
        s
    }

    /// Writes to `path`, creating its folder.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::invalid("profile folder", dir.display(), e.to_string()))?;
        }
        std::fs::write(path, self.to_text()).map_err(|e| Error::invalid("profile", path.display(), e.to_string()))
    }

    /// A value.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }

    /// Sets a value.
    pub fn set(&mut self, key: impl Into<String>, v: f64) {
        self.values.insert(key.into(), v);
    }

    /// Every key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let mut p = Profile::default();
        p.set("ddr_memcpy_gbps", 12.5);
        p.set("cpu_pack_gbps_64", 9.0);
        let back = Profile::parse(&p.to_text()).unwrap();
        assert_eq!(back, p);
        assert!(Profile::parse("x = y").unwrap_err().to_string().contains("line 1: y"));
        assert!(Profile::parse("novalue").unwrap_err().to_string().contains("profile line = 1"));
        let missing = std::env::temp_dir().join("memwall-no-such-profile.toml");
        assert_eq!(Profile::load(&missing).unwrap(), Profile::default());
    }
}
