//! Lanes: the NVMe tier's I/O engines, one transfer on each at a time, so
//! transfers of different objects (a prefetch worker's and a caller's
//! demand fetch) run at once instead of queueing behind one lock.
//!
//! Lane 0 owns the io_uring whose table holds the registered DDR blocks; a
//! transfer of a registered block takes lane 0 when it is free and any
//! other free lane (with unregistered requests) when it is not.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};

use super::engine::Engine;

/// The engines and a rotating start for picking a free one.
pub(crate) struct Lanes {
    engines: Vec<Mutex<Engine>>,
    next: AtomicUsize,
}

/// A lane held for one transfer.
pub(crate) struct Held<'a> {
    /// The lane's engine, locked.
    pub(crate) engine: MutexGuard<'a, Engine>,
    /// Whether it is lane 0 (registered slots are valid only there).
    pub(crate) registered_ring: bool,
}

impl Lanes {
    /// Lanes over `engines`; the first is the one with the registration
    /// table. `engines` is not empty.
    pub(crate) fn new(engines: Vec<Engine>) -> Self {
        debug_assert!(!engines.is_empty());
        Lanes { engines: engines.into_iter().map(Mutex::new).collect(), next: AtomicUsize::new(0) }
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
        if registered {
            if let Some(engine) = self.engines[0].try_lock() {
                return Held { engine, registered_ring: true };
            }
        }
        let n = self.engines.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            if let Some(engine) = self.engines[i].try_lock() {
                return Held { engine, registered_ring: i == 0 };
            }
        }
        let i = if registered { 0 } else { start % n };
        Held { engine: self.engines[i].lock(), registered_ring: i == 0 }
    }

    /// Lane `i`, locked (tests hold one busy).
    #[cfg(test)]
    pub(crate) fn lock(&self, i: usize) -> MutexGuard<'_, Engine> {
        self.engines[i].lock()
    }
}
