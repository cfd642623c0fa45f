//! The pager's configuration: an embedded default ([`DEFAULT_CONFIG`]), text
//! overrides, and the resolution of `auto` values against this machine.

mod parse;
mod system;
#[cfg(test)]
mod test;

use std::path::PathBuf;

use crate::error::{Result, TierError};
use crate::nvme::FaultInjector;

pub(crate) use system::{available_memory_bytes, free_disk_bytes, memlock_limit_bytes};

/// The embedded default configuration, in the text form
/// [`Config::from_text`] reads. [`Config::default`] equals it parsed.
pub const DEFAULT_CONFIG: &str = include_str!("default.conf");

/// A tier's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// Derived from the machine (see [`DEFAULT_CONFIG`] for each tier's rule).
    Auto,
    /// Exactly this many bytes.
    Bytes(u64),
}

/// A three-way switch: decided by the machine, forced on, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    /// On where the machine supports it.
    Auto,
    /// On; an error where the machine does not support it.
    On,
    /// Off.
    Off,
}

/// Which system interface the NVMe tier uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoEngineChoice {
    /// io_uring, or pread/pwrite where io_uring is refused (EPERM, ENOSYS).
    Auto,
    /// io_uring only: [`crate::Pager::new`] fails where it is refused.
    IoUring,
    /// pread/pwrite only.
    Pread,
}

/// A built-in eviction policy (see [`crate::policy`]); a custom one is given
/// to [`crate::Pager::with_policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Least recently used first.
    Lru,
    /// Least frequently used first, with ageing.
    Frequency,
    /// By object class and priority, then least recently used.
    ClassPriority,
}

/// The HBM tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbmConfig {
    /// Auto: on when device `device` opens.
    pub enabled: Toggle,
    /// The CUDA device ordinal.
    pub device: usize,
    /// Auto: 80% of the device memory.
    pub capacity: Capacity,
}

/// The DDR tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdrConfig {
    /// Auto: half of MemAvailable.
    pub capacity: Capacity,
    /// Pinned host memory: auto means when the HBM tier is on.
    pub pinned: Toggle,
}

/// The NVMe tier.
#[derive(Debug, Clone)]
pub struct NvmeConfig {
    /// Folder of the data file (created if missing).
    pub dir: PathBuf,
    /// A named, persistent data file: opened (created when missing, never
    /// truncated) and kept when the pager drops, so a later pager can adopt
    /// the extents an earlier one wrote ([`crate::Pager::adopt`]). `None`: a
    /// fresh, uniquely named file in `dir`, removed when the pager drops.
    pub file: Option<PathBuf>,
    /// Auto: half of the file system's free space.
    pub capacity: Capacity,
    /// io_uring or pread/pwrite.
    pub io: IoEngineChoice,
    /// O_DIRECT: auto drops it when the file system rejects it.
    pub direct: Toggle,
    /// Requests in flight at once (io_uring), per lane.
    pub queue_depth: u32,
    /// Transfers that run at once, each on its own io_uring (or pread), so
    /// a prefetch and a demand fetch of different objects do not queue
    /// behind each other. `None` (auto): `prefetch_workers + 1`, one for each
    /// prefetch worker and one for a calling thread.
    pub lanes: Option<usize>,
    /// Bytes per request, and per checksummed extent. A multiple of 4096.
    pub block_size: usize,
    /// Use io_uring registered staging buffers when they fit the memlock
    /// budget.
    pub register_buffers: bool,
    /// Locked-memory budget for registered buffers; `None`: half of
    /// RLIMIT_MEMLOCK.
    pub memlock_budget: Option<u64>,
    /// Test hook: makes NVMe I/O fail on demand. Inert unless armed.
    pub faults: FaultInjector,
}

/// Everything [`crate::Pager::new`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HBM tier.
    pub hbm: HbmConfig,
    /// The DDR tier.
    pub ddr: DdrConfig,
    /// The NVMe tier.
    pub nvme: NvmeConfig,
    /// The eviction policy.
    pub policy: PolicyKind,
    /// Threads running prefetches (at least 1).
    pub prefetch_workers: usize,
}

impl Default for Config {
    /// The embedded default, [`DEFAULT_CONFIG`].
    fn default() -> Self {
        Config {
            hbm: HbmConfig { enabled: Toggle::Auto, device: 0, capacity: Capacity::Auto },
            ddr: DdrConfig { capacity: Capacity::Auto, pinned: Toggle::Auto },
            nvme: NvmeConfig {
                dir: std::env::temp_dir().join("memwall-tiers"),
                file: None,
                capacity: Capacity::Auto,
                io: IoEngineChoice::Auto,
                direct: Toggle::Auto,
                queue_depth: 32,
                lanes: None,
                block_size: 1 << 20,
                register_buffers: true,
                memlock_budget: None,
                faults: FaultInjector::default(),
            },
            policy: PolicyKind::Lru,
            prefetch_workers: 2,
        }
    }
}

/// Largest NVMe request: io_uring lengths are 32-bit, and staging buffers
/// stay reasonable.
pub const MAX_BLOCK_SIZE: usize = 64 << 20;
/// Largest queue depth.
pub const MAX_QUEUE_DEPTH: u32 = 4096;
/// Most prefetch threads.
pub const MAX_PREFETCH_WORKERS: usize = 64;
/// Most NVMe lanes.
pub const MAX_NVME_LANES: usize = 64;

impl Config {
    /// The embedded default with the `key = value` lines of `text` applied
    /// over it (same syntax as [`DEFAULT_CONFIG`]).
    pub fn from_text(text: &str) -> Result<Self> {
        let mut config = Config::default();
        parse::apply(&mut config, text)?;
        config.validate()?;
        Ok(config)
    }

    /// A small config for tests and examples: no HBM, fixed DDR and NVMe
    /// capacities, the NVMe file in `dir`.
    pub fn small(dir: impl Into<PathBuf>, ddr_bytes: u64, nvme_bytes: u64) -> Self {
        let mut c = Config::default();
        c.hbm.enabled = Toggle::Off;
        c.ddr.capacity = Capacity::Bytes(ddr_bytes);
        c.nvme.capacity = Capacity::Bytes(nvme_bytes);
        c.nvme.dir = dir.into();
        c.nvme.block_size = 64 << 10;
        c.nvme.queue_depth = 8;
        c
    }

    /// NVMe transfers that run at once: `nvme.lanes`, or one per prefetch
    /// worker plus one for a caller.
    pub fn nvme_lanes(&self) -> usize {
        self.nvme.lanes.unwrap_or(self.prefetch_workers + 1)
    }

    /// Checks every value; the error names the key and the value.
    pub fn validate(&self) -> Result<()> {
        let n = &self.nvme;
        if n.queue_depth == 0 || n.queue_depth > MAX_QUEUE_DEPTH {
            return Err(TierError::config("nvme.queue_depth", n.queue_depth, format!("must be 1..={MAX_QUEUE_DEPTH}")));
        }
        if let Some(l) = n.lanes.filter(|&l| l == 0 || l > MAX_NVME_LANES) {
            return Err(TierError::config("nvme.lanes", l, format!("must be 1..={MAX_NVME_LANES} (or auto)")));
        }
        if n.block_size == 0 || n.block_size % crate::nvme::ALIGN != 0 || n.block_size > MAX_BLOCK_SIZE {
            return Err(TierError::config(
                "nvme.block_size",
                n.block_size,
                format!("must be a multiple of {} up to {MAX_BLOCK_SIZE}", crate::nvme::ALIGN),
            ));
        }
        if n.dir.as_os_str().is_empty() {
            return Err(TierError::config("nvme.dir", "", "must name a folder"));
        }
        if n.file.as_ref().is_some_and(|f| f.as_os_str().is_empty() || f.file_name().is_none()) {
            let shown = n.file.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
            return Err(TierError::config("nvme.file", shown, "must name a file (or none)"));
        }
        if self.prefetch_workers == 0 || self.prefetch_workers > MAX_PREFETCH_WORKERS {
            return Err(TierError::config(
                "prefetch_workers",
                self.prefetch_workers,
                format!("must be 1..={MAX_PREFETCH_WORKERS}"),
            ));
        }
        for (key, cap) in [("hbm.capacity", self.hbm.capacity), ("ddr.capacity", self.ddr.capacity)] {
            if cap == Capacity::Bytes(0) {
                return Err(TierError::config(key, 0, "must be more than 0 bytes (or auto)"));
            }
        }
        if n.capacity == Capacity::Bytes(0) {
            return Err(TierError::config("nvme.capacity", 0, "must be more than 0 bytes (or auto)"));
        }
        Ok(())
    }
}
