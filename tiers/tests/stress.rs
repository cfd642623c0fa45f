//! Many threads pinning, writing, fetching, prefetching, evicting and
//! flushing the same objects at once, with a DDR tier far too small, on both
//! I/O paths: no deadlock (a watchdog bounds the run), no torn or stale
//! reads, no lost writes.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{io_paths, pager_with};
use memwall_tiers::config::IoEngineChoice;
use memwall_tiers::{ObjectClass, ObjectId, ObjectSpec, Pager, Tier, TierError};

const OBJECTS: u64 = 24;
const THREADS: usize = 4;
const RUN_FOR: Duration = Duration::from_millis(1500);
const MAX_OPS_PER_THREAD: u64 = 50_000;
const WATCHDOG: Duration = Duration::from_secs(30);

fn size_of(id: u64) -> usize {
    4096 * (1 + (id % 3) as usize) + (id % 2) as usize * 104
}

fn tag(id: u64, version: u64) -> u64 {
    (id << 40) ^ version.wrapping_mul(0x9E37_79B9)
}

fn write_version(bytes: &mut [u8], id: u64, version: u64) {
    let words: &mut [u64] = bytemuck::cast_slice_mut(bytes);
    words[0] = version;
    for w in &mut words[1..] {
        *w = tag(id, version);
    }
}

/// The version `bytes` hold, after checking every word agrees with it.
fn read_version(bytes: &[u8], id: u64) -> u64 {
    let words: &[u64] = bytemuck::cast_slice(bytes);
    let v = words[0];
    if let Some(i) = words[1..].iter().position(|&w| w != tag(id, v)) {
        panic!("object {id}: torn or foreign data at word {} (version {v})", i + 1);
    }
    v
}

/// Errors a racing operation may legitimately get.
fn tolerated(e: &TierError) -> bool {
    matches!(e.root(), TierError::PinConflict { .. } | TierError::TierFull { .. } | TierError::WouldLoseData { .. })
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn worker(p: Pager, expected: Arc<Vec<AtomicU64>>, seed: u64) -> [u64; 2] {
    let mut rng = Rng(seed);
    let start = Instant::now();
    let (mut done, mut refused) = (0u64, 0u64);
    while start.elapsed() < RUN_FOR && done < MAX_OPS_PER_THREAD {
        let id = rng.next() % OBJECTS;
        let oid = ObjectId(id);
        let op = rng.next() % 100;
        let r: Result<(), TierError> = match op {
            0..=34 => p.pin(oid, Tier::Ddr).map(|g| {
                let v = read_version(g.bytes().unwrap(), id);
                // Writers need every copy unpinned, so under a read pin the
                // version cannot move.
                assert_eq!(v, expected[id as usize].load(Ordering::SeqCst), "object {id}: stale read");
            }),
            35..=49 => p.pin_mut(oid, Tier::Ddr).map(|mut g| {
                let bytes = g.bytes_mut().unwrap();
                let v = read_version(bytes, id);
                assert_eq!(v, expected[id as usize].load(Ordering::SeqCst), "object {id}: lost write");
                write_version(bytes, id, v + 1);
                expected[id as usize].store(v + 1, Ordering::SeqCst);
            }),
            50..=62 => p.fetch(oid, if op % 2 == 0 { Tier::Ddr } else { Tier::Nvme }),
            63..=72 => p.prefetch(oid, Tier::Ddr).wait(),
            73..=89 => p.evict(oid, if op % 3 == 0 { Tier::Nvme } else { Tier::Ddr }).map(|_| ()),
            90..=94 => p.flush(oid).map(|_| ()),
            _ => p.status(oid).map(|s| assert_eq!(s.spec.size, size_of(id))),
        };
        match r {
            Ok(()) => done += 1,
            Err(e) if tolerated(&e) => refused += 1,
            Err(e) => panic!("object {id}, op {op}: unexpected error: {e}"),
        }
    }
    [done, refused]
}

fn stress(io: IoEngineChoice) -> String {
    // DDR holds about six of the 24 objects.
    let t = pager_with(6 * 8192, 1 << 24, |c| {
        c.nvme.io = io;
        c.prefetch_workers = 2;
    });
    let p = t.pager.clone();
    let expected: Arc<Vec<AtomicU64>> = Arc::new((0..OBJECTS).map(|_| AtomicU64::new(0)).collect());
    for id in 0..OBJECTS {
        p.register(ObjectSpec::new(id, size_of(id), ObjectClass::KvBlock)).unwrap();
        let mut data = vec![0u8; size_of(id)];
        write_version(&mut data, id, 0);
        p.insert(ObjectId(id), &data).unwrap();
    }
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (p, expected) = (p.clone(), expected.clone());
            std::thread::spawn(move || worker(p, expected, 0x1234_5678 + i as u64 * 7919))
        })
        .collect();
    let counts: Vec<[u64; 2]> = handles.into_iter().map(|h| h.join().expect("worker panicked")).collect();
    for id in 0..OBJECTS {
        let bytes = p.read(ObjectId(id)).unwrap();
        assert_eq!(read_version(&bytes, id), expected[id as usize].load(Ordering::SeqCst), "object {id} lost a write");
    }
    // Everything survives a full write-back and a DDR purge too.
    p.flush_all().unwrap();
    for id in 0..OBJECTS {
        p.evict(ObjectId(id), Tier::Ddr).unwrap();
        assert_eq!(p.status(ObjectId(id)).unwrap().resident, vec![Tier::Nvme]);
        let bytes = p.read(ObjectId(id)).unwrap();
        assert_eq!(read_version(&bytes, id), expected[id as usize].load(Ordering::SeqCst));
    }
    let st = p.stats();
    let done: u64 = counts.iter().map(|c| c[0]).sum();
    let refused: u64 = counts.iter().map(|c| c[1]).sum();
    let writes: u64 = expected.iter().map(|v| v.load(Ordering::SeqCst)).sum();
    assert!(done > 1000, "only {done} operations completed");
    assert!(writes > 100, "only {writes} writes");
    assert!(st.tier(Tier::Ddr).evictions > 0 && st.tier(Tier::Ddr).write_backs > 0, "{st}");
    assert!(st.tier(Tier::Ddr).used <= 6 * 8192, "{st}");
    format!("{io:?}: {done} ops, {refused} refused (pin conflicts, full tier), {writes} writes\n{st}")
}

#[test]
fn threads_pin_fetch_and_evict_without_deadlock_or_lost_data() {
    for (_, io) in io_paths() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(|| stress(io)));
        });
        match rx.recv_timeout(WATCHDOG) {
            Ok(Ok(report)) => eprintln!("{report}"),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("{io:?}: stress test still running after {WATCHDOG:?}: deadlock"),
        }
    }
}
