//! Per-rank counters, printed at `MPI_Finalize` with `MEMWALL_MPI_STATS=1`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The counters (relaxed atomics: they are only read at the end).
#[derive(Debug, Default)]
pub struct Stats {
    /// Intercepted calls memwall did the work of.
    pub handled: AtomicU64,
    /// Intercepted calls passed to the library untouched.
    pub passthrough: AtomicU64,
    /// Bytes packed and unpacked by memwall.
    pub bytes: AtomicU64,
    /// Of the handled calls, those on device buffers.
    pub device: AtomicU64,
    /// Committed types memwall took over.
    pub types_supported: AtomicU64,
    /// Committed types left to the library.
    pub types_unsupported: AtomicU64,
    /// Internal failures that fell back to the library.
    pub fallbacks: AtomicU64,
}

impl Stats {
    /// One handled call that moved `bytes` through the engine.
    pub fn handled(&self, bytes: usize) {
        self.handled.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// One call passed through.
    pub fn pass(&self) {
        self.passthrough.fetch_add(1, Relaxed);
    }

    /// Adds `bytes` packed or unpacked outside a counted call (completions).
    pub fn bytes(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// The line printed at Finalize.
    pub fn line(&self, rank: i32) -> String {
        format!(
            "memwall-mpi stats: rank {rank} handled={} packed_bytes={} passthrough={} device={} \
             types_supported={} types_unsupported={} fallbacks={}\n",
            self.handled.load(Relaxed),
            self.bytes.load(Relaxed),
            self.passthrough.load(Relaxed),
            self.device.load(Relaxed),
            self.types_supported.load(Relaxed),
            self.types_unsupported.load(Relaxed),
            self.fallbacks.load(Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_every_counter() {
        let s = Stats::default();
        s.handled(100);
        s.handled(20);
        s.pass();
        s.bytes(5);
        let l = s.line(3);
        assert!(l.starts_with("memwall-mpi stats: rank 3 handled=2 packed_bytes=125 passthrough=1 "), "{l}");
        assert!(l.ends_with("fallbacks=0\n"), "{l}");
    }
}
