//! Per-tier statistics: hits, misses, bytes moved in and out with the time
//! it took (achieved GB/s), evictions and write-backs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::nvme::NvmeIoInfo;
use crate::tier::Tier;

/// A relaxed atomic counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// `d` in nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Wall time during which at least one copy was in flight: concurrent
/// copies (one per NVMe lane, say) count once, so bytes over this time is
/// the rate the tier achieved together.
#[derive(Debug, Default)]
pub(crate) struct BusyClock {
    /// Copies in flight, and since when the count has been above zero.
    running: Mutex<(usize, Option<Instant>)>,
    ns: Counter,
}

impl BusyClock {
    fn start(&self) {
        let mut r = self.running.lock();
        if r.0 == 0 {
            r.1 = Some(Instant::now());
        }
        r.0 += 1;
    }

    fn stop(&self) {
        let mut r = self.running.lock();
        r.0 = r.0.saturating_sub(1);
        if r.0 == 0 {
            if let Some(since) = r.1.take() {
                self.ns.add(nanos(since.elapsed()));
            }
        }
    }

    /// Busy nanoseconds so far, counting a copy in flight up to now.
    pub(crate) fn ns(&self) -> u64 {
        let r = self.running.lock();
        let open = r.1.map_or(0, |since| nanos(since.elapsed()));
        self.ns.get().saturating_add(open)
    }
}

/// One tier's live counters.
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) ns_in: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) ns_out: Counter,
    pub(crate) busy_in: BusyClock,
    pub(crate) busy_out: BusyClock,
    pub(crate) evictions: Counter,
    pub(crate) write_backs: Counter,
}

/// All tiers' live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    tiers: [TierCounters; 3],
}

impl Counters {
    pub(crate) fn tier(&self, tier: Tier) -> &TierCounters {
        &self.tiers[tier.index()]
    }

    /// Starts the busy clocks of a copy from `from` into `to`; they stop
    /// when the guard drops.
    pub(crate) fn busy(&self, from: Option<Tier>, to: Tier) -> Busy<'_> {
        let clocks = [Some(&self.tier(to).busy_in), from.map(|f| &self.tier(f).busy_out)];
        clocks.iter().flatten().for_each(|c| c.start());
        Busy { clocks }
    }

    /// Records a copy of `bytes` from `from` (none: zero-filled) into `to`.
    pub(crate) fn moved(&self, from: Option<Tier>, to: Tier, bytes: usize, took: Duration) {
        let ns = nanos(took);
        let t = self.tier(to);
        t.bytes_in.add(bytes as u64);
        t.ns_in.add(ns);
        if let Some(from) = from {
            let f = self.tier(from);
            f.bytes_out.add(bytes as u64);
            f.ns_out.add(ns);
        }
    }
}

/// A copy in flight on the busy clocks; stops them when dropped.
pub(crate) struct Busy<'a> {
    clocks: [Option<&'a BusyClock>; 2],
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.clocks.iter().flatten().for_each(|c| c.stop());
    }
}

/// A snapshot of one tier's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct TierStats {
    /// The tier.
    pub tier: Tier,
    /// Whether the tier exists in this pager.
    pub available: bool,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes in use (copies, plus reservations of transfers in flight).
    pub used: u64,
    /// Copies held.
    pub copies: usize,
    /// Pins and fetches that found a copy here.
    pub hits: u64,
    /// Pins and fetches that had to bring a copy here.
    pub misses: u64,
    /// Bytes copied into the tier.
    pub bytes_in: u64,
    /// Seconds spent copying into the tier, summed over copies (concurrent
    /// copies each count their own time).
    pub seconds_in: f64,
    /// Wall-clock seconds in which at least one copy into the tier was in
    /// flight (concurrent copies count once; failed copies count too,
    /// though their bytes do not).
    pub busy_seconds_in: f64,
    /// Bytes copied out of the tier.
    pub bytes_out: u64,
    /// Seconds spent copying out of the tier, summed over copies.
    pub seconds_out: f64,
    /// Wall-clock seconds in which at least one copy out of the tier was in
    /// flight (concurrent copies count once).
    pub busy_seconds_out: f64,
    /// Copies dropped to make room.
    pub evictions: u64,
    /// Dirty copies written to the tier below before being dropped.
    pub write_backs: u64,
}

impl TierStats {
    /// Achieved GB/s (1e9 bytes) of copies into the tier, all together:
    /// bytes over [`Self::busy_seconds_in`]; 0 before any.
    pub fn gbps_in(&self) -> f64 {
        gbps(self.bytes_in, self.busy_seconds_in)
    }

    /// Achieved GB/s of copies out of the tier, all together: bytes over
    /// [`Self::busy_seconds_out`]; 0 before any.
    pub fn gbps_out(&self) -> f64 {
        gbps(self.bytes_out, self.busy_seconds_out)
    }

    /// hits / (hits + misses); 0 before any access.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

fn gbps(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds / 1e9
    } else {
        0.0
    }
}

/// A snapshot of the whole pager: [`crate::Pager::stats`].
#[derive(Debug, Clone, PartialEq)]
pub struct PagerStats {
    /// HBM, DDR, NVMe.
    pub tiers: [TierStats; 3],
    /// How the NVMe tier does I/O: io_uring or pread, O_DIRECT or not, and
    /// why.
    pub nvme: NvmeIoInfo,
    /// Whether DDR blocks are page-locked.
    pub ddr_pinned: bool,
    /// Bytes of freed DDR blocks kept for reuse (within the DDR capacity).
    pub ddr_kept: u64,
    /// The eviction policy's name.
    pub policy: &'static str,
    /// Objects registered.
    pub objects: usize,
}

impl PagerStats {
    /// The statistics of `tier`.
    pub fn tier(&self, tier: Tier) -> &TierStats {
        &self.tiers[tier.index()]
    }
}

impl fmt::Display for PagerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let io = format!("{} x {} lanes", self.nvme.path, self.nvme.lanes);
        let direct = if self.nvme.direct { "O_DIRECT" } else { "buffered" };
        writeln!(f, "pager: {} objects, policy {}, NVMe {io}, {direct}", self.objects, self.policy)?;
        writeln!(
            f,
            "{:<5} {:>14} {:>14} {:>7} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}",
            "tier", "capacity", "used", "copies", "hits", "misses", "in GB/s", "out GB/s", "evictions", "writebacks"
        )?;
        for t in self.tiers.iter().filter(|t| t.available) {
            writeln!(
                f,
                "{:<5} {:>14} {:>14} {:>7} {:>9} {:>9} {:>8.2} {:>8.2} {:>9} {:>9}",
                t.tier.name(),
                t.capacity,
                t.used,
                t.copies,
                t.hits,
                t.misses,
                t.gbps_in(),
                t.gbps_out(),
                t.evictions,
                t.write_backs
            )?;
        }
        for note in &self.nvme.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::BusyClock;
    use std::time::{Duration, Instant};

    #[test]
    fn overlapping_copies_count_once_on_the_busy_clock() {
        let clock = BusyClock::default();
        let nap = || std::thread::sleep(Duration::from_millis(20));
        let first = Instant::now();
        clock.start();
        nap();
        let second = Instant::now();
        clock.start();
        nap();
        clock.stop();
        let second = second.elapsed();
        nap();
        clock.stop();
        let span = first.elapsed();
        let busy = Duration::from_nanos(clock.ns());
        assert!(busy <= span, "busy {busy:?} within the span {span:?}");
        assert!(busy * 10 >= span * 9, "busy {busy:?} covers the span {span:?}");
        assert!(busy < span + second, "the overlap counted once");
        nap();
        assert_eq!(clock.ns(), busy.as_nanos() as u64, "idle time does not count");
    }
}
