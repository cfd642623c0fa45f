//! Lanes: the NVMe tier's I/O engines, one transfer on each at a time, so
//! transfers of different objects (a prefetch worker's and a caller's
//! demand fetch) run at once instead of queueing behind one lock.
//!
//! Lane 0 owns the io_uring whose table holds the registered DDR blocks; a
//! transfer of a registered block takes lane 0 when it is free and any
//! other free lane (with unregistered requests) when it is not.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};

use super::engine::Engine;

/// The engines and a rotating start for picking a free one.
pub(crate) struct Lanes {
    engines: Vec<Mutex<Engine>>,
    next: AtomicUsize,
    /// Lane 0 is (still) an io_uring whose table registered blocks use.
    registered_ring: AtomicBool,
}

/// A lane held for one transfer.
pub(crate) struct Held<'a> {
    /// The lane's engine, locked.
    pub(crate) engine: MutexGuard<'a, Engine>,
    /// Its index: registered slots are valid only on lane 0.
    pub(crate) index: usize,
}

impl Lanes {
    /// Lanes over `engines`; the first is the one with the registration
    /// table. `engines` is not empty.
    pub(crate) fn new(engines: Vec<Engine>) -> Self {
        debug_assert!(!engines.is_empty());
        let ring = matches!(engines.first(), Some(Engine::Uring(_)));
        Lanes {
            engines: engines.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            registered_ring: AtomicBool::new(ring),
        }
    }

    /// Whether lane 0 still runs the io_uring that registered blocks use
    /// (registering more blocks is pointless once it has fallen back).
    pub(crate) fn registered_ring(&self) -> bool {
        self.registered_ring.load(Ordering::Relaxed)
    }

    /// Lane 0 moved to pread: registered blocks no longer prefer it.
    pub(crate) fn first_fell_back(&self) {
        self.registered_ring.store(false, Ordering::Relaxed);
    }

    /// How many transfers can run at once.
    pub(crate) fn count(&self) -> usize {
        self.engines.len()
    }

    /// Lane 0, waiting for it (for reading its state).
    pub(crate) fn first(&self) -> MutexGuard<'_, Engine> {
        self.engines[0].lock()
    }

    /// A free lane, preferring lane 0 when `registered` (the buffer has a
    /// slot there); waits for one when all are busy.
    pub(crate) fn acquire(&self, registered: bool) -> Held<'_> {
        let registered = registered && self.registered_ring();
        let held = |engine, index| Held { engine, index };
        if registered {
            if let Some(engine) = self.engines[0].try_lock() {
                return held(engine, 0);
            }
        }
        let n = self.engines.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            if let Some(engine) = self.engines[i].try_lock() {
                return held(engine, i);
            }
        }
        let i = if registered { 0 } else { start % n };
        held(self.engines[i].lock(), i)
    }

    /// Lane `i`, locked (tests hold one busy).
    #[cfg(test)]
    pub(crate) fn lock(&self, i: usize) -> MutexGuard<'_, Engine> {
        self.engines[i].lock()
    }
}
