//! Fault injection for the NVMe tier: a test hook, always compiled and inert
//! until armed, that makes the next requests fail the way disks fail.
//!
//! Faults apply per request (one block of `nvme.block_size` bytes) after the
//! request really ran, so the real I/O path is exercised and only its result
//! is replaced. Set one in [`crate::config::NvmeConfig::faults`] (a clone
//! shares the same rules) and arm it at any time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Reads from the data file.
    Read,
    /// Writes to the data file.
    Write,
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request fails with ENOSPC.
    NoSpace,
    /// The request fails with EIO.
    Eio,
    /// The request moves only half of its bytes.
    Short,
    /// A read returns with one byte flipped (caught by the extent checksum).
    Corrupt,
    /// The request fails with EINVAL, as when a file system rejects
    /// O_DIRECT; the tier reopens the file buffered and retries.
    DirectRejected,
}

#[derive(Debug)]
struct Rule {
    op: IoOp,
    fault: Fault,
    skip: u32,
    count: u32,
}

#[derive(Debug, Default)]
struct Rules {
    armed: AtomicBool,
    rules: Mutex<Vec<Rule>>,
    injected: AtomicU64,
}

/// Shared, clonable fault rules (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    inner: Arc<Rules>,
}

impl FaultInjector {
    /// No faults armed.
    pub fn new() -> Self {
        FaultInjector::default()
    }

    /// Makes the next `count` requests of kind `op` fail with `fault`.
    pub fn inject(&self, op: IoOp, fault: Fault, count: u32) {
        self.inject_after(op, fault, 0, count);
    }

    /// Lets `skip` requests of kind `op` pass, then makes the next `count`
    /// fail with `fault`.
    pub fn inject_after(&self, op: IoOp, fault: Fault, skip: u32, count: u32) {
        if count == 0 {
            return;
        }
        self.inner.rules.lock().push(Rule { op, fault, skip, count });
        self.inner.armed.store(true, Ordering::Release);
    }

    /// Disarms every rule.
    pub fn clear(&self) {
        self.inner.rules.lock().clear();
        self.inner.armed.store(false, Ordering::Release);
    }

    /// How many faults have been injected so far.
    pub fn injected(&self) -> u64 {
        self.inner.injected.load(Ordering::Relaxed)
    }

    /// Whether any rule is still armed.
    pub fn is_armed(&self) -> bool {
        self.inner.armed.load(Ordering::Acquire)
    }

    /// The fault for the next request of kind `op`, if one is due (consumes
    /// it).
    pub(crate) fn next(&self, op: IoOp) -> Option<Fault> {
        if !self.is_armed() {
            return None;
        }
        let mut rules = self.inner.rules.lock();
        let i = rules.iter().position(|r| r.op == op)?;
        let rule = &mut rules[i];
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        let fault = rule.fault;
        rule.count -= 1;
        if rule.count == 0 {
            rules.remove(i);
        }
        if rules.is_empty() {
            self.inner.armed.store(false, Ordering::Release);
        }
        self.inner.injected.fetch_add(1, Ordering::Relaxed);
        Some(fault)
    }
}

/// A request's result after fault injection: bytes moved, or `-errno`;
/// `corrupt` asks the engine to flip a byte of what was read.
pub(crate) struct Outcome {
    pub(crate) result: i64,
    pub(crate) corrupt: bool,
}

impl FaultInjector {
    /// Applies the due fault (if any) to a request of `op` that really
    /// returned `result` (bytes, or `-errno`).
    pub(crate) fn apply(&self, op: IoOp, result: i64) -> Outcome {
        let pass = Outcome { result, corrupt: false };
        if result < 0 {
            return pass;
        }
        match self.next(op) {
            None => pass,
            Some(Fault::NoSpace) => Outcome { result: -i64::from(libc::ENOSPC), corrupt: false },
            Some(Fault::Eio) => Outcome { result: -i64::from(libc::EIO), corrupt: false },
            Some(Fault::DirectRejected) => Outcome { result: -i64::from(libc::EINVAL), corrupt: false },
            Some(Fault::Short) => Outcome { result: result / 2, corrupt: false },
            Some(Fault::Corrupt) => Outcome { result, corrupt: op == IoOp::Read },
        }
    }
}
