//! The pager's shared state: the object table, per-tier accounting, and the
//! two RAII marks every operation uses, [`Claim`] (one transfer per object at
//! a time) and [`Reservation`] (bytes set aside in a tier).
//!
//! Locking: one mutex over the table, never held during I/O. An object that
//! a thread is moving is `busy`; other threads wait for it on the condvar
//! (holding no claim themselves), and eviction only picks objects that are
//! neither busy nor pinned, so claims never wait on each other in a cycle.
//! Pins are read or write locks on a copy, only ever *tried* (never waited
//! for), so a conflicting pin is an error rather than a deadlock.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use super::stats::Counters;
use crate::ddr::{padded_len, DdrStore, HostBlock};
use crate::error::{Result, TierError};
use crate::hbm::{DeviceBlock, HbmStore};
use crate::nvme::{NvmeCopy, NvmeStore};
use crate::object::{ObjectId, ObjectSpec};
use crate::policy::Policy;
use crate::tier::Tier;

/// A DDR copy; read-locked by pins and transfers, write-locked by `pin_mut`.
pub(crate) type HostCell = Arc<RwLock<HostBlock>>;
/// An HBM copy, locked like [`HostCell`].
pub(crate) type DeviceCell = Arc<RwLock<DeviceBlock>>;

/// One registered object and its copies. Every copy that exists is current:
/// a writer drops all other copies when it pins.
pub(crate) struct Entry {
    pub(crate) spec: ObjectSpec,
    pub(crate) hbm: Option<DeviceCell>,
    pub(crate) ddr: Option<HostCell>,
    pub(crate) nvme: Option<Arc<NvmeCopy>>,
    /// A thread holds the [`Claim`] on this object.
    pub(crate) busy: bool,
    pub(crate) last_use: [u64; 3],
    pub(crate) uses: [u64; 3],
}

impl Entry {
    pub(crate) fn new(spec: ObjectSpec) -> Self {
        Entry { spec, hbm: None, ddr: None, nvme: None, busy: false, last_use: [0; 3], uses: [0; 3] }
    }

    /// Whether a copy is in `tier`.
    pub(crate) fn has(&self, tier: Tier) -> bool {
        match tier {
            Tier::Hbm => self.hbm.is_some(),
            Tier::Ddr => self.ddr.is_some(),
            Tier::Nvme => self.nvme.is_some(),
        }
    }

    /// Whether the copy in `tier` is pinned (or being read by a transfer).
    pub(crate) fn pinned(&self, tier: Tier) -> bool {
        match tier {
            Tier::Hbm => self.hbm.as_ref().is_some_and(|c| c.is_locked()),
            Tier::Ddr => self.ddr.as_ref().is_some_and(|c| c.is_locked()),
            Tier::Nvme => false,
        }
    }

    /// Whether the copy in `tier` (HBM or DDR) is the slowest copy, so
    /// dropping it needs a write-back first. NVMe copies are never dirty:
    /// NVMe is where data is written back to.
    pub(crate) fn dirty(&self, tier: Tier) -> bool {
        tier != Tier::Nvme && self.has(tier) && Tier::ALL.iter().filter(|&&t| t > tier).all(|&t| !self.has(t))
    }

    /// Whether the copy in `tier` is the object's only copy.
    pub(crate) fn only_copy(&self, tier: Tier) -> bool {
        self.has(tier) && Tier::ALL.iter().filter(|&&t| t != tier).all(|&t| !self.has(t))
    }

    /// Tiers whose copy is pinned.
    pub(crate) fn pinned_tiers(&self) -> Vec<Tier> {
        Tier::ALL.into_iter().filter(|&t| self.pinned(t)).collect()
    }
}

/// The table and the accounting, behind [`Core::state`].
pub(crate) struct State {
    pub(crate) objects: HashMap<ObjectId, Entry>,
    /// Bytes in use or reserved, per tier.
    pub(crate) used: [u64; 3],
    /// Counts uses; policies read it as time.
    pub(crate) clock: u64,
    pub(crate) policy: Box<dyn Policy>,
}

impl State {
    /// The entry of `id`.
    pub(crate) fn entry(&self, id: ObjectId) -> Result<&Entry> {
        self.objects.get(&id).ok_or(TierError::UnknownObject { id })
    }

    /// The entry of `id`, mutable.
    pub(crate) fn entry_mut(&mut self, id: ObjectId) -> Result<&mut Entry> {
        self.objects.get_mut(&id).ok_or(TierError::UnknownObject { id })
    }

    /// Records a use of `id`'s copy in `tier`.
    pub(crate) fn touch(&mut self, id: ObjectId, tier: Tier) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(e) = self.objects.get_mut(&id) {
            e.last_use[tier.index()] = clock;
            e.uses[tier.index()] += 1;
        }
    }
}

/// Everything the pager's handles and workers share.
pub(crate) struct Core {
    pub(crate) state: Mutex<State>,
    /// Signalled when a claim or reservation is released.
    pub(crate) changed: Condvar,
    pub(crate) ddr: DdrStore,
    pub(crate) nvme: NvmeStore,
    pub(crate) hbm: Option<HbmStore>,
    /// Why there is no HBM tier, when there is none.
    pub(crate) hbm_missing: String,
    pub(crate) capacity: [u64; 3],
    pub(crate) counters: Counters,
}

/// Bytes a copy of `size` bytes takes in `tier`.
pub(crate) fn cost(tier: Tier, size: usize) -> u64 {
    match tier {
        Tier::Hbm => size as u64,
        Tier::Ddr | Tier::Nvme => padded_len(size) as u64,
    }
}

impl Core {
    /// `Ok` when `tier` exists in this pager.
    pub(crate) fn check_tier(&self, tier: Tier) -> Result<()> {
        if tier == Tier::Hbm && self.hbm.is_none() {
            return Err(TierError::TierUnavailable { tier, reason: self.hbm_missing.clone() });
        }
        Ok(())
    }

    /// The HBM store, or why there is none.
    pub(crate) fn hbm(&self) -> Result<&HbmStore> {
        self.hbm
            .as_ref()
            .ok_or_else(|| TierError::TierUnavailable { tier: Tier::Hbm, reason: self.hbm_missing.clone() })
    }

    /// Waits until no other thread moves `id`, then claims it.
    pub(crate) fn claim(&self, id: ObjectId) -> Result<Claim<'_>> {
        let mut st = self.state.lock();
        loop {
            let e = st.entry_mut(id)?;
            if !e.busy {
                e.busy = true;
                return Ok(Claim { core: self, id, armed: true });
            }
            self.changed.wait(&mut st);
        }
    }

    /// Drops `id`'s copy in `tier` (no write-back: callers check
    /// [`Entry::dirty`]) and returns its bytes to the tier.
    pub(crate) fn drop_copy(&self, st: &mut State, id: ObjectId, tier: Tier) {
        let Some(e) = st.objects.get_mut(&id) else { return };
        let size = e.spec.size;
        let had = match tier {
            Tier::Hbm => e.hbm.take().is_some(),
            Tier::Ddr => match e.ddr.take() {
                Some(cell) => {
                    // Unpinned (callers check), so this is the last handle.
                    if let Ok(lock) = Arc::try_unwrap(cell) {
                        self.ddr.recycle(lock.into_inner());
                    }
                    true
                }
                None => false,
            },
            Tier::Nvme => match e.nvme.take() {
                Some(copy) => {
                    self.nvme.free(&copy);
                    true
                }
                None => false,
            },
        };
        if had {
            st.used[tier.index()] -= cost(tier, size);
            e.last_use[tier.index()] = 0;
            e.uses[tier.index()] = 0;
        }
    }
}

/// The right to move one object: set `busy` while held, cleared on drop.
pub(crate) struct Claim<'a> {
    core: &'a Core,
    pub(crate) id: ObjectId,
    armed: bool,
}

impl<'a> Claim<'a> {
    /// Wraps an object the caller just marked busy under the lock.
    pub(crate) fn adopt(core: &'a Core, id: ObjectId) -> Self {
        Claim { core, id, armed: true }
    }

    /// Releases the claim while the caller holds the lock.
    pub(crate) fn release_in(mut self, st: &mut State) {
        if let Some(e) = st.objects.get_mut(&self.id) {
            e.busy = false;
        }
        self.armed = false;
        self.core.changed.notify_all();
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut st = self.core.state.lock();
            if let Some(e) = st.objects.get_mut(&self.id) {
                e.busy = false;
            }
            drop(st);
            self.core.changed.notify_all();
        }
    }
}

/// Bytes set aside in a tier for a copy being made; returned on drop unless
/// committed.
pub(crate) struct Reservation<'a> {
    core: &'a Core,
    tier: Tier,
    bytes: u64,
    armed: bool,
}

impl<'a> Reservation<'a> {
    pub(crate) fn new(core: &'a Core, tier: Tier, bytes: u64) -> Self {
        Reservation { core, tier, bytes, armed: true }
    }

    /// The copy was installed: the bytes stay in use.
    pub(crate) fn commit(mut self) {
        self.armed = false;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.core.state.lock().used[self.tier.index()] -= self.bytes;
            self.core.changed.notify_all();
        }
    }
}
