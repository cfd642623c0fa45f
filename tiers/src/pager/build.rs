//! Building a pager from a config: the `auto` values resolved against this
//! machine, the tiers opened, the workers started.

use std::collections::HashMap;
use std::sync::Arc;

use memwall::gpu::Gpu;
use parking_lot::{Condvar, Mutex};

use super::core::{Core, State};
use super::prefetch::Workers;
use super::stats::{Counters, PagerStats, TierStats};
use crate::config::{available_memory_bytes, free_disk_bytes, Capacity, Config, Toggle};
use crate::ddr::DdrStore;
use crate::error::{Result, TierError};
use crate::hbm::HbmStore;
use crate::nvme::NvmeStore;
use crate::policy::Policy;
use crate::tier::Tier;

/// Share of device memory the HBM tier takes by default.
const HBM_AUTO_SHARE: f64 = 0.8;

/// The core and its workers.
pub(super) fn build(config: &Config, policy: Box<dyn Policy>) -> Result<(Arc<Core>, Workers)> {
    config.validate()?;
    let (gpu, hbm_missing) = open_gpu(config)?;
    let hbm = gpu.clone().map(HbmStore::new).transpose()?;
    let hbm_capacity = match (&gpu, config.hbm.capacity) {
        (None, _) => 0,
        (Some(_), Capacity::Bytes(b)) => b,
        (Some(g), Capacity::Auto) => (g.props().total_mem_bytes as f64 * HBM_AUTO_SHARE) as u64,
    };
    let pinned = match config.ddr.pinned {
        Toggle::Off => false,
        Toggle::Auto => gpu.is_some(),
        Toggle::On if gpu.is_some() => true,
        Toggle::On => return Err(TierError::config("ddr.pinned", "on", format!("needs a CUDA device: {hbm_missing}"))),
    };
    let ddr = DdrStore::new(if pinned { gpu.clone() } else { None });
    let ddr_capacity = match config.ddr.capacity {
        Capacity::Bytes(b) => b,
        Capacity::Auto => available_memory_bytes() / 2,
    };
    let nvme = NvmeStore::open(&config.nvme, config.nvme_lanes())?;
    let nvme_capacity = match config.nvme.capacity {
        Capacity::Bytes(b) => b,
        Capacity::Auto => {
            free_disk_bytes(&config.nvme.dir).map_err(|e| TierError::Io {
                op: "statvfs",
                path: config.nvme.dir.clone(),
                offset: 0,
                len: 0,
                source: e,
            })? / 2
        }
    };
    if ddr_capacity == 0 || nvme_capacity == 0 {
        return Err(TierError::config(
            if ddr_capacity == 0 { "ddr.capacity" } else { "nvme.capacity" },
            "auto",
            "resolved to 0 bytes on this machine: set it explicitly",
        ));
    }
    let state = State { objects: HashMap::new(), used: [0; 3], clock: 0, policy };
    let core = Arc::new(Core {
        state: Mutex::new(state),
        changed: Condvar::new(),
        ddr,
        nvme,
        hbm,
        hbm_missing,
        capacity: [hbm_capacity, ddr_capacity, nvme_capacity],
        counters: Counters::default(),
    });
    let workers = Workers::start(config.prefetch_workers).map_err(|e| TierError::Io {
        op: "spawning prefetch workers",
        path: config.nvme.dir.clone(),
        offset: 0,
        len: 0,
        source: e,
    })?;
    Ok((core, workers))
}

/// The device for the HBM tier, or why there is none.
fn open_gpu(config: &Config) -> Result<(Option<Arc<Gpu>>, String)> {
    let device = config.hbm.device;
    match config.hbm.enabled {
        Toggle::Off => Ok((None, "disabled in the config (hbm.enabled = off)".into())),
        Toggle::Auto => match Gpu::new(device) {
            Ok(g) => Ok((Some(Arc::new(g)), String::new())),
            Err(e) => Ok((None, format!("no CUDA device {device}: {e}"))),
        },
        Toggle::On => match Gpu::new(device) {
            Ok(g) => Ok((Some(Arc::new(g)), String::new())),
            Err(e) => Err(TierError::TierUnavailable { tier: Tier::Hbm, reason: format!("hbm.enabled = on: {e}") }),
        },
    }
}

impl Core {
    /// A snapshot of the statistics.
    pub(crate) fn stats(&self) -> PagerStats {
        let (used, copies, objects, policy) = {
            let st = self.state.lock();
            let mut copies = [0usize; 3];
            for e in st.objects.values() {
                for t in Tier::ALL {
                    copies[t.index()] += usize::from(e.has(t));
                }
            }
            (st.used, copies, st.objects.len(), st.policy.name())
        };
        let tier = |t: Tier| {
            let c = self.counters.tier(t);
            TierStats {
                tier: t,
                available: self.check_tier(t).is_ok(),
                capacity: self.capacity[t.index()],
                used: used[t.index()],
                copies: copies[t.index()],
                hits: c.hits.get(),
                misses: c.misses.get(),
                bytes_in: c.bytes_in.get(),
                seconds_in: c.ns_in.get() as f64 / 1e9,
                busy_seconds_in: c.busy_in.ns() as f64 / 1e9,
                bytes_out: c.bytes_out.get(),
                seconds_out: c.ns_out.get() as f64 / 1e9,
                busy_seconds_out: c.busy_out.ns() as f64 / 1e9,
                evictions: c.evictions.get(),
                write_backs: c.write_backs.get(),
            }
        };
        PagerStats {
            tiers: [tier(Tier::Hbm), tier(Tier::Ddr), tier(Tier::Nvme)],
            nvme: self.nvme.info(),
            ddr_pinned: self.ddr.pinned(),
            ddr_kept: self.ddr.kept_bytes(),
            policy,
            objects,
        }
    }
}
