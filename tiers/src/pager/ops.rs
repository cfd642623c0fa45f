//! The pager's operations on the shared core; [`crate::Pager`] forwards to
//! these.

use std::sync::Arc;

use parking_lot::RwLock;

use super::core::{cost, Claim, Core, Entry, State};
use super::guard::{PinGuard, PinMutGuard, ReadCopy, WriteCopy};
use crate::error::{Result, TierError};
use crate::nvme::NvmeExtent;
use crate::object::{ObjectId, ObjectSpec, ObjectStatus};
use crate::tier::Tier;

fn not_pinnable(id: ObjectId, tier: Tier) -> Result<()> {
    if tier == Tier::Nvme {
        return Err(TierError::NotViewable { id, tier, what: "pinning (pin in DDR or HBM)" });
    }
    Ok(())
}

/// Read-locks `id`'s copy in `tier` (which must exist).
fn read_copy(st: &State, id: ObjectId, tier: Tier) -> Result<ReadCopy> {
    let e = st.entry(id)?;
    let conflict = || TierError::PinConflict { id, tier, detail: "pinned for writing: unpin it first" };
    match tier {
        Tier::Ddr => e.ddr.as_ref().and_then(|c| c.try_read_arc()).map(ReadCopy::Host).ok_or_else(conflict),
        Tier::Hbm => e.hbm.as_ref().and_then(|c| c.try_read_arc()).map(ReadCopy::Device).ok_or_else(conflict),
        Tier::Nvme => Err(TierError::NotViewable { id, tier, what: "pinning (pin in DDR or HBM)" }),
    }
}

/// Fails when any copy of `e` is pinned.
fn check_unpinned(e: &Entry, detail: &'static str) -> Result<()> {
    match e.pinned_tiers().first() {
        Some(&tier) => Err(TierError::PinConflict { id: e.spec.id, tier, detail }),
        None => Ok(()),
    }
}

impl Core {
    /// The checks [`Core::register`] makes before it locks the table.
    fn check_spec(&self, spec: &ObjectSpec) -> Result<()> {
        let id = spec.id;
        if spec.size == 0 {
            return Err(TierError::ZeroSize { id });
        }
        let nvme = cost(Tier::Nvme, spec.size);
        let capacity = self.capacity[Tier::Nvme.index()];
        if nvme > capacity {
            return Err(TierError::TooLarge { id, size: nvme, tier: Tier::Nvme, capacity });
        }
        Ok(())
    }

    pub(crate) fn register(&self, spec: ObjectSpec) -> Result<()> {
        let id = spec.id;
        self.check_spec(&spec)?;
        let mut st = self.state.lock();
        if let Some(e) = st.objects.get(&id) {
            return Err(TierError::AlreadyRegistered { id, size: e.spec.size });
        }
        st.objects.insert(id, Entry::new(spec));
        Ok(())
    }

    pub(crate) fn insert(&self, id: ObjectId, bytes: &[u8]) -> Result<()> {
        let claim = self.claim(id)?;
        let existing = {
            let st = self.state.lock();
            let e = st.entry(id)?;
            if bytes.len() != e.spec.size {
                return Err(TierError::SizeMismatch { id, expected: e.spec.size, got: bytes.len() });
            }
            check_unpinned(e, "pinned: unpin it before replacing its contents")?;
            e.ddr.clone()
        };
        let reservation;
        let fresh = match existing {
            Some(cell) => {
                // Busy and unpinned: nobody else can lock it meanwhile.
                let mut block = cell.try_write_arc().ok_or(TierError::PinConflict {
                    id,
                    tier: Tier::Ddr,
                    detail: "pinned: unpin it before replacing its contents",
                })?;
                block.bytes_mut().copy_from_slice(bytes);
                reservation = None;
                None
            }
            None => {
                reservation = Some(self.make_room(id, Tier::Ddr, cost(Tier::Ddr, bytes.len()))?);
                let mut block = self.ddr.alloc_for_overwrite(bytes.len())?;
                block.bytes_mut().copy_from_slice(bytes);
                Some(block)
            }
        };
        let mut st = self.state.lock();
        self.drop_copy(&mut st, id, Tier::Hbm);
        self.drop_copy(&mut st, id, Tier::Nvme);
        if let Some(block) = fresh {
            st.entry_mut(id)?.ddr = Some(Arc::new(RwLock::new(block)));
        }
        if let Some(r) = reservation {
            r.commit();
        }
        st.touch(id, Tier::Ddr);
        claim.release_in(&mut st);
        Ok(())
    }

    pub(crate) fn remove(&self, id: ObjectId) -> Result<()> {
        let claim = self.claim(id)?;
        let mut st = self.state.lock();
        check_unpinned(st.entry(id)?, "pinned: unpin it before removing the object")?;
        for tier in Tier::ALL {
            self.drop_copy(&mut st, id, tier);
        }
        st.objects.remove(&id);
        claim.release_in(&mut st);
        Ok(())
    }

    pub(crate) fn pin(&self, id: ObjectId, tier: Tier) -> Result<PinGuard> {
        self.check_tier(tier)?;
        not_pinnable(id, tier)?;
        let claim = {
            let mut st = self.state.lock();
            loop {
                let e = st.entry_mut(id)?;
                if e.busy {
                    self.changed.wait(&mut st);
                    continue;
                }
                if e.has(tier) {
                    let copy = read_copy(&st, id, tier)?;
                    st.touch(id, tier);
                    self.counters.tier(tier).hits.add(1);
                    return Ok(PinGuard::new(id, copy));
                }
                e.busy = true;
                break Claim::adopt(self, id);
            }
        };
        self.counters.tier(tier).misses.add(1);
        self.ensure(&claim, tier)?;
        let mut st = self.state.lock();
        let copy = read_copy(&st, id, tier)?;
        claim.release_in(&mut st);
        Ok(PinGuard::new(id, copy))
    }

    pub(crate) fn pin_mut(&self, id: ObjectId, tier: Tier) -> Result<PinMutGuard> {
        self.check_tier(tier)?;
        not_pinnable(id, tier)?;
        let claim = self.claim(id)?;
        let hit = self.ensure(&claim, tier)?;
        self.count_access(tier, hit);
        let mut st = self.state.lock();
        check_unpinned(st.entry(id)?, "pinned: a writer needs every copy unpinned")?;
        for other in Tier::ALL.into_iter().filter(|&t| t != tier) {
            self.drop_copy(&mut st, id, other);
        }
        let e = st.entry(id)?;
        let conflict = TierError::PinConflict { id, tier, detail: "pinned: a writer needs every copy unpinned" };
        let copy = match tier {
            Tier::Ddr => e.ddr.as_ref().and_then(|c| c.try_write_arc()).map(WriteCopy::Host),
            _ => e.hbm.as_ref().and_then(|c| c.try_write_arc()).map(WriteCopy::Device),
        };
        let copy = copy.ok_or(conflict)?;
        claim.release_in(&mut st);
        Ok(PinMutGuard::new(id, copy))
    }

    pub(crate) fn fetch(&self, id: ObjectId, tier: Tier) -> Result<()> {
        self.check_tier(tier)?;
        let claim = self.claim(id)?;
        let hit = self.ensure(&claim, tier)?;
        self.count_access(tier, hit);
        if hit {
            let mut st = self.state.lock();
            st.touch(id, tier);
            claim.release_in(&mut st);
        }
        Ok(())
    }

    fn count_access(&self, tier: Tier, hit: bool) {
        let c = self.counters.tier(tier);
        if hit {
            c.hits.add(1);
        } else {
            c.misses.add(1);
        }
    }

    pub(crate) fn evict(&self, id: ObjectId, tier: Tier) -> Result<bool> {
        self.check_tier(tier)?;
        let claim = self.claim(id)?;
        let dropped = self.demote(&claim, tier)?;
        if dropped {
            self.counters.tier(tier).evictions.add(1);
        }
        Ok(dropped)
    }

    /// Writes the object to NVMe unless it is there already; returns whether
    /// it wrote.
    pub(crate) fn write_back(&self, id: ObjectId) -> Result<bool> {
        let claim = self.claim(id)?;
        let present = self.ensure(&claim, Tier::Nvme)?;
        Ok(!present)
    }

    pub(crate) fn flush_all(&self) -> Result<usize> {
        let pending: Vec<ObjectId> = {
            let st = self.state.lock();
            st.objects.iter().filter(|(_, e)| !e.has(Tier::Nvme)).map(|(&id, _)| id).collect()
        };
        let mut written = 0;
        for id in pending {
            match self.write_back(id) {
                Ok(w) => written += usize::from(w),
                // Removed meanwhile: nothing to flush.
                Err(TierError::UnknownObject { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.nvme.sync()?;
        Ok(written)
    }

    pub(crate) fn nvme_extent(&self, id: ObjectId) -> Result<Option<NvmeExtent>> {
        let st = self.state.lock();
        Ok(st.entry(id)?.nvme.as_ref().map(|c| c.extent(self.nvme.block_size())))
    }

    pub(crate) fn adopt(&self, spec: ObjectSpec, extent: &NvmeExtent) -> Result<()> {
        let id = spec.id;
        self.check_spec(&spec)?;
        let bytes = cost(Tier::Nvme, spec.size);
        let bad = |reason: String| TierError::BadExtent { id, offset: extent.offset, len: extent.len, reason };
        // One lock over the checks and the install: nobody sees the object
        // registered without its copy.
        let mut st = self.state.lock();
        if let Some(e) = st.objects.get(&id) {
            return Err(TierError::AlreadyRegistered { id, size: e.spec.size });
        }
        let capacity = self.capacity[Tier::Nvme.index()];
        let used = st.used[Tier::Nvme.index()];
        if used + bytes > capacity {
            return Err(bad(format!("the NVMe tier has {} of {capacity} bytes free", capacity - used)));
        }
        let copy = self.nvme.adopt(extent, bytes as usize).map_err(bad)?;
        st.used[Tier::Nvme.index()] += bytes;
        let mut entry = Entry::new(spec);
        entry.nvme = Some(Arc::new(copy));
        st.objects.insert(id, entry);
        Ok(())
    }

    pub(crate) fn status(&self, id: ObjectId) -> Result<ObjectStatus> {
        let st = self.state.lock();
        let e = st.entry(id)?;
        Ok(ObjectStatus {
            spec: e.spec,
            resident: Tier::ALL.into_iter().filter(|&t| e.has(t)).collect(),
            dirty: Tier::ALL.into_iter().filter(|&t| e.dirty(t)).collect(),
            pinned: e.pinned_tiers(),
            busy: e.busy,
        })
    }
}
