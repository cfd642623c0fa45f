//! Where objects live: making a copy in a tier ([`Core::ensure`]), making
//! room by eviction ([`Core::make_room`]) and dropping a copy with
//! write-back when it is dirty ([`Core::demote`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use super::core::{cost, Claim, Core, Reservation, State};
use super::transfer::{Made, Source};
use crate::error::{Result, TierError};
use crate::object::ObjectId;
use crate::policy::Candidate;
use crate::tier::Tier;

/// How often, and how long each time, `make_room` waits for a busy copy to
/// become evictable before it reports the tier full.
const ROOM_WAITS: u32 = 20;
const ROOM_WAIT: Duration = Duration::from_millis(5);

impl Core {
    /// With `claim` held: a copy of the object in `to`, made from its
    /// nearest copy (or zeros) after making room. Returns whether the copy
    /// was there already. On error the object keeps exactly the copies it
    /// had.
    pub(crate) fn ensure(&self, claim: &Claim<'_>, to: Tier) -> Result<bool> {
        self.check_tier(to)?;
        let id = claim.id;
        let (size, source) = {
            let st = self.state.lock();
            let e = st.entry(id)?;
            if e.has(to) {
                return Ok(true);
            }
            (e.spec.size, Source::for_target(e, to)?)
        };
        let from = source.tier();
        let wrap = |e: TierError| TierError::Transfer { id, size, from: from.unwrap_or(to), to, source: Box::new(e) };
        let reservation = self.make_room(id, to, cost(to, size))?;
        let busy = self.counters.busy(from, to);
        let started = Instant::now();
        let made = self.copy(id, size, &source, to).map_err(wrap);
        let elapsed = started.elapsed();
        drop(busy);
        let made = made?;
        drop(source);
        let mut st = self.state.lock();
        let e = st.entry_mut(id)?;
        match made {
            Made::Hbm(d) => e.hbm = Some(Arc::new(RwLock::new(d))),
            Made::Ddr(b) => e.ddr = Some(Arc::new(RwLock::new(b))),
            Made::Nvme(c) => e.nvme = Some(Arc::new(c)),
        }
        reservation.commit();
        st.touch(id, to);
        drop(st);
        self.counters.moved(from, to, size, elapsed);
        Ok(false)
    }

    /// Reserves `bytes` in `tier` for object `id`, evicting other copies as
    /// the policy ranks them. Never evicts `id`, a pinned copy, a busy
    /// object, or the only copy of anything.
    pub(crate) fn make_room(&self, id: ObjectId, tier: Tier, bytes: u64) -> Result<Reservation<'_>> {
        let capacity = self.capacity[tier.index()];
        if bytes > capacity {
            return Err(TierError::TooLarge { id, size: bytes, tier, capacity });
        }
        let mut waits = 0;
        loop {
            let mut st = self.state.lock();
            let used = st.used[tier.index()];
            if used + bytes <= capacity {
                st.used[tier.index()] += bytes;
                if tier == Tier::Ddr && used + bytes + self.ddr.kept_bytes() > capacity {
                    // Kept free blocks count against the capacity too.
                    self.ddr.trim(capacity - used - bytes, usize::try_from(bytes).unwrap_or(usize::MAX));
                }
                return Ok(Reservation::new(self, tier, bytes));
            }
            let choice = pick_victim(&st, id, tier);
            match choice.victim {
                Some(victim) => {
                    st.entry_mut(victim)?.busy = true;
                    drop(st);
                    let vclaim = Claim::adopt(self, victim);
                    self.demote(&vclaim, tier).map_err(|e| TierError::Eviction {
                        id,
                        victim,
                        tier,
                        source: Box::new(e),
                    })?;
                    self.counters.tier(tier).evictions.add(1);
                }
                None if choice.busy > 0 && waits < ROOM_WAITS => {
                    waits += 1;
                    self.changed.wait_for(&mut st, ROOM_WAIT);
                }
                None => {
                    return Err(TierError::TierFull {
                        tier,
                        id,
                        requested: bytes,
                        used,
                        capacity,
                        unevictable: choice.unevictable,
                    })
                }
            }
        }
    }

    /// With `claim` held: drops the object's copy in `tier`, first writing
    /// it back to the tier below when it is the slowest copy. Returns
    /// whether a copy was dropped.
    pub(crate) fn demote(&self, claim: &Claim<'_>, tier: Tier) -> Result<bool> {
        let id = claim.id;
        let dirty = {
            let st = self.state.lock();
            let e = st.entry(id)?;
            if !e.has(tier) {
                return Ok(false);
            }
            if e.pinned(tier) {
                return Err(TierError::PinConflict { id, tier, detail: "pinned: unpin it before evicting" });
            }
            if tier.below().is_none() && e.only_copy(tier) {
                return Err(TierError::WouldLoseData { id, tier });
            }
            e.dirty(tier)
        };
        if let (true, Some(below)) = (dirty, tier.below()) {
            self.ensure(claim, below)?;
            self.counters.tier(tier).write_backs.add(1);
        }
        let mut st = self.state.lock();
        self.drop_copy(&mut st, id, tier);
        Ok(true)
    }
}

/// The outcome of a victim search.
struct Choice {
    victim: Option<ObjectId>,
    /// Copies in the tier that are pinned or busy.
    unevictable: usize,
    /// Copies in the tier whose object is busy (may free up soon).
    busy: usize,
}

/// The lowest-ranked evictable copy in `tier` other than `requester`'s.
fn pick_victim(st: &State, requester: ObjectId, tier: Tier) -> Choice {
    let mut best: Option<(f64, ObjectId)> = None;
    let (mut unevictable, mut busy) = (0, 0);
    for (&id, e) in &st.objects {
        if !e.has(tier) || id == requester {
            continue;
        }
        if e.busy || e.pinned(tier) {
            unevictable += 1;
            busy += usize::from(e.busy);
            continue;
        }
        let dirty = e.dirty(tier);
        if tier.below().is_none() && e.only_copy(tier) {
            // The only copy, on the last tier: not evictable.
            unevictable += 1;
            continue;
        }
        let c = Candidate {
            id,
            class: e.spec.class,
            priority: e.spec.priority,
            size: e.spec.size,
            tier,
            last_use: e.last_use[tier.index()],
            uses: e.uses[tier.index()],
            dirty,
        };
        let rank = st.policy.rank(&c, st.clock);
        let rank = if rank.is_nan() { f64::INFINITY } else { rank };
        if best.is_none_or(|(r, bid)| rank < r || (rank == r && id < bid)) {
            best = Some((rank, id));
        }
    }
    Choice { victim: best.map(|(_, id)| id), unevictable, busy }
}
