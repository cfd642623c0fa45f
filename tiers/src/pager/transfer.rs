//! Copying one object from a tier to another: device copies on the HBM
//! streams, NVMe through the data file, NVMe<->HBM through a staging block.

use std::sync::Arc;

use parking_lot::lock_api::ArcRwLockReadGuard;
use parking_lot::RawRwLock;

use super::core::{Core, Entry};
use crate::ddr::HostBlock;
use crate::error::{Result, TierError};
use crate::hbm::DeviceBlock;
use crate::nvme::NvmeCopy;
use crate::object::ObjectId;
use crate::tier::Tier;

/// Where a new copy comes from, held (read-locked) for the transfer.
pub(crate) enum Source {
    /// The object has no copy yet: it is all zeros.
    Zero,
    /// The HBM copy.
    Hbm(ArcRwLockReadGuard<RawRwLock, DeviceBlock>),
    /// The DDR copy.
    Ddr(ArcRwLockReadGuard<RawRwLock, HostBlock>),
    /// The NVMe copy.
    Nvme(Arc<NvmeCopy>),
}

impl Source {
    /// The source tier (`None` for zeros).
    pub(crate) fn tier(&self) -> Option<Tier> {
        match self {
            Source::Zero => None,
            Source::Hbm(_) => Some(Tier::Hbm),
            Source::Ddr(_) => Some(Tier::Ddr),
            Source::Nvme(_) => Some(Tier::Nvme),
        }
    }

    /// The nearest copy to copy into `to` from: the host side first for
    /// HBM, HBM before NVMe for DDR, DDR before HBM for NVMe. Fails when that
    /// copy is pinned for writing.
    pub(crate) fn for_target(e: &Entry, to: Tier) -> Result<Source> {
        let id = e.spec.id;
        let order = match to {
            Tier::Hbm => [Tier::Ddr, Tier::Nvme],
            Tier::Ddr => [Tier::Hbm, Tier::Nvme],
            Tier::Nvme => [Tier::Ddr, Tier::Hbm],
        };
        let busy =
            |tier| TierError::PinConflict { id, tier, detail: "pinned for writing: it cannot be copied meanwhile" };
        for tier in order {
            match tier {
                Tier::Hbm => {
                    if let Some(c) = &e.hbm {
                        return c.try_read_arc().map(Source::Hbm).ok_or_else(|| busy(Tier::Hbm));
                    }
                }
                Tier::Ddr => {
                    if let Some(c) = &e.ddr {
                        return c.try_read_arc().map(Source::Ddr).ok_or_else(|| busy(Tier::Ddr));
                    }
                }
                Tier::Nvme => {
                    if let Some(c) = &e.nvme {
                        return Ok(Source::Nvme(c.clone()));
                    }
                }
            }
        }
        Ok(Source::Zero)
    }
}

/// A copy just made, to be installed in the entry.
pub(crate) enum Made {
    /// In device memory.
    Hbm(DeviceBlock),
    /// In host memory.
    Ddr(HostBlock),
    /// On NVMe.
    Nvme(NvmeCopy),
}

impl Core {
    /// Makes a copy of object `id` (`size` bytes) in `to` from `src`. Leaves
    /// `src` untouched, whatever happens.
    pub(crate) fn copy(&self, id: ObjectId, size: usize, src: &Source, to: Tier) -> Result<Made> {
        match (src, to) {
            (Source::Zero, Tier::Ddr) => Ok(Made::Ddr(self.ddr.alloc(size)?)),
            (Source::Zero, Tier::Hbm) => Ok(Made::Hbm(self.hbm()?.alloc(size)?)),
            (Source::Zero, Tier::Nvme) => {
                let mut s = self.ddr.staging(size)?;
                s.padded_mut().fill(0);
                let written = self.nvme.write(&s);
                self.ddr.give_back(s);
                Ok(Made::Nvme(written?))
            }
            (Source::Ddr(b), Tier::Hbm) => {
                let hbm = self.hbm()?;
                let mut d = hbm.alloc(size)?;
                hbm.upload(id, b, &mut d)?;
                Ok(Made::Hbm(d))
            }
            (Source::Ddr(b), Tier::Nvme) => Ok(Made::Nvme(self.nvme.write(b)?)),
            (Source::Hbm(d), Tier::Ddr) => {
                let mut b = self.ddr.alloc_for_overwrite(size)?;
                self.hbm()?.download(id, d, &mut b)?;
                Ok(Made::Ddr(b))
            }
            (Source::Hbm(d), Tier::Nvme) => {
                let mut s = self.ddr.staging(size)?;
                let written = self.hbm()?.download(id, d, &mut s).and_then(|()| {
                    s.clear_padding();
                    self.nvme.write(&s)
                });
                self.ddr.give_back(s);
                Ok(Made::Nvme(written?))
            }
            (Source::Nvme(c), Tier::Ddr) => {
                let mut b = self.ddr.alloc_for_overwrite(size)?;
                self.nvme.read(c, &mut b)?;
                Ok(Made::Ddr(b))
            }
            (Source::Nvme(c), Tier::Hbm) => {
                let hbm = self.hbm()?;
                let mut s = self.ddr.staging(size)?;
                let uploaded = self.nvme.read(c, &mut s).and_then(|()| {
                    let mut d = hbm.alloc(size)?;
                    hbm.upload(id, &s, &mut d)?;
                    Ok(d)
                });
                self.ddr.give_back(s);
                Ok(Made::Hbm(uploaded?))
            }
            (Source::Hbm(_), Tier::Hbm) | (Source::Ddr(_), Tier::Ddr) | (Source::Nvme(_), Tier::Nvme) => {
                Err(TierError::NotViewable { id, tier: to, what: "copying a tier onto itself" })
            }
        }
    }
}
