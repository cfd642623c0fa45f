//! The pager: objects with copies in one or more tiers, moved between them
//! on demand (pins, fetches), ahead of time (prefetch) and under pressure
//! (eviction with write-back).

mod build;
mod core;
mod guard;
mod ops;
mod prefetch;
mod residency;
mod stats;
mod transfer;

use std::sync::Arc;

pub use guard::{PinGuard, PinMutGuard};
pub use prefetch::Ticket;
pub use stats::{PagerStats, TierStats};

use self::core::Core;
use crate::config::Config;
use crate::error::Result;
use crate::nvme::NvmeExtent;
use crate::object::{ObjectId, ObjectSpec, ObjectStatus};
use crate::policy::Policy;
use crate::tier::Tier;
use prefetch::Workers;

/// The three-tier pager. A cheap handle: clones share one pager, and it is
/// `Send + Sync`, so threads pin, fetch and evict concurrently.
///
/// An object is registered with a size, a class and a priority, then lives
/// as copies in one or more tiers. Every copy that exists holds the current
/// data; the slowest copy is *dirty* (nothing below it) and is written back
/// to the next tier down before it is dropped. A registered object that was
/// never written reads as zeros.
///
/// ```no_run
/// use memwall_tiers::{Config, ObjectClass, ObjectSpec, Pager, Tier};
/// let pager = Pager::new(Config::small(std::env::temp_dir().join("doc"), 1 << 20, 1 << 24))?;
/// pager.register(ObjectSpec::new(7, 4096, ObjectClass::Expert))?;
/// pager.insert(memwall_tiers::ObjectId(7), &[1u8; 4096])?;
/// pager.evict(memwall_tiers::ObjectId(7), Tier::Ddr)?; // written back to NVMe
/// let ticket = pager.prefetch(memwall_tiers::ObjectId(7), Tier::Ddr);
/// // ... compute while it loads ...
/// ticket.wait()?;
/// let pin = pager.pin(memwall_tiers::ObjectId(7), Tier::Ddr)?;
/// assert_eq!(pin.view::<u32>()?[0], 0x0101_0101);
/// # Ok::<(), memwall_tiers::TierError>(())
/// ```
#[derive(Clone)]
pub struct Pager {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager").field("capacity", &self.shared.core.capacity).finish_non_exhaustive()
    }
}

/// Dropped when the last handle goes: workers first (they finish queued
/// prefetches), then the core and its data file.
struct Shared {
    workers: Workers,
    core: Arc<Core>,
}

impl Pager {
    /// A pager with the policy the config names.
    pub fn new(config: Config) -> Result<Self> {
        let policy = crate::policy::builtin(config.policy);
        Pager::with_policy(config, policy)
    }

    /// A pager with a custom eviction policy.
    pub fn with_policy(config: Config, policy: Box<dyn Policy>) -> Result<Self> {
        let (core, workers) = build::build(&config, policy)?;
        Ok(Pager { shared: Arc::new(Shared { workers, core }) })
    }

    fn core(&self) -> &Core {
        &self.shared.core
    }

    /// Registers an object (zero-filled, in no tier until first used).
    /// Errors: size 0, an id already registered, larger than the NVMe tier.
    pub fn register(&self, spec: ObjectSpec) -> Result<()> {
        self.core().register(spec)
    }

    /// Replaces the contents of a registered object with `bytes` (exactly
    /// its size), placing it in DDR (evicting to make room) and dropping its
    /// other copies. Fails when a copy is pinned.
    pub fn insert(&self, id: ObjectId, bytes: &[u8]) -> Result<()> {
        self.core().insert(id, bytes)
    }

    /// Drops every copy and forgets the object. Fails when a copy is pinned.
    pub fn remove(&self, id: ObjectId) -> Result<()> {
        self.core().remove(id)
    }

    /// Pins the object's copy in `tier` (DDR or HBM), fetching it there
    /// first on a miss. The copy is not evicted while the guard lives. Waits
    /// for a transfer of the same object in flight; fails (never blocks)
    /// when the copy is pinned for writing.
    pub fn pin(&self, id: ObjectId, tier: Tier) -> Result<PinGuard> {
        self.core().pin(id, tier)
    }

    /// Pins the object's copy in `tier` for writing: fetches it there, drops
    /// every other copy (they would go stale), so the copy is dirty and is
    /// written back before it is ever dropped. Fails when any copy is
    /// pinned.
    pub fn pin_mut(&self, id: ObjectId, tier: Tier) -> Result<PinMutGuard> {
        self.core().pin_mut(id, tier)
    }

    /// Brings a copy of the object into `tier` now (NVMe: writes it back).
    pub fn fetch(&self, id: ObjectId, tier: Tier) -> Result<()> {
        self.core().fetch(id, tier)
    }

    /// Starts bringing a copy into `tier` on a worker thread and returns at
    /// once; [`Ticket::wait`] for it. The copy is not pinned: pin it after
    /// the wait (a hit, unless it was evicted meanwhile).
    pub fn prefetch(&self, id: ObjectId, tier: Tier) -> Ticket {
        let core = self.shared.core.clone();
        self.shared.workers.submit(id, tier, move || core.fetch(id, tier))
    }

    /// Drops the object's copy in `tier`, writing it back to the tier below
    /// first when it is dirty. Returns whether there was a copy. Fails when
    /// the copy is pinned, or it is the only copy and `tier` is NVMe.
    pub fn evict(&self, id: ObjectId, tier: Tier) -> Result<bool> {
        self.core().evict(id, tier)
    }

    /// Makes sure the object has a copy on NVMe and the data file is synced
    /// to the device. Returns whether it wrote the object.
    pub fn flush(&self, id: ObjectId) -> Result<bool> {
        let wrote = self.core().write_back(id)?;
        self.core().nvme.sync()?;
        Ok(wrote)
    }

    /// [`Pager::flush`] for every object; returns how many it wrote.
    pub fn flush_all(&self) -> Result<usize> {
        self.core().flush_all()
    }

    /// Forces every NVMe write done so far to the device (fdatasync on the
    /// data file). Writes made by [`Pager::prefetch`] into [`Tier::Nvme`]
    /// are durable after their tickets are waited for and this returns.
    pub fn sync(&self) -> Result<()> {
        self.core().nvme.sync()
    }

    /// Where the object's NVMe copy lies in the data file, with its blocks'
    /// checksums; `None` when it has no NVMe copy. With a persistent data
    /// file (`nvme.file`), a later pager takes the copy over with
    /// [`Pager::adopt`].
    pub fn nvme_extent(&self, id: ObjectId) -> Result<Option<NvmeExtent>> {
        self.core().nvme_extent(id)
    }

    /// Registers an object whose only copy is `extent` of this pager's
    /// (persistent) data file, written by an earlier pager and recorded
    /// with [`Pager::nvme_extent`]. The extent's range is reserved; its
    /// blocks' checksums are verified when the object is first read.
    /// Errors: those of [`Pager::register`], and [`crate::TierError::BadExtent`]
    /// when the extent overlaps one in use or does not match the object's
    /// size or this pager's block size.
    pub fn adopt(&self, spec: ObjectSpec, extent: &NvmeExtent) -> Result<()> {
        self.core().adopt(spec, extent)
    }

    /// A copy of the object's bytes (pins it in DDR for the copy).
    pub fn read(&self, id: ObjectId) -> Result<Vec<u8>> {
        Ok(self.pin(id, Tier::Ddr)?.bytes()?.to_vec())
    }

    /// Where the object's copies are.
    pub fn status(&self, id: ObjectId) -> Result<ObjectStatus> {
        self.core().status(id)
    }

    /// The tiers this pager has, fastest first (HBM only with a device).
    pub fn tiers(&self) -> Vec<Tier> {
        Tier::ALL.into_iter().filter(|&t| self.core().check_tier(t).is_ok()).collect()
    }

    /// The capacity of `tier` in bytes (0 for a tier that is absent).
    pub fn capacity(&self, tier: Tier) -> u64 {
        self.core().capacity[tier.index()]
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> PagerStats {
        self.core().stats()
    }
}
