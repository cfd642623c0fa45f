//! io_uring registered buffers for DDR blocks: a sparse table of slots on
//! the ring, a block registered into a slot the first time the NVMe tier
//! moves it, and unregistered (before its memory is freed) when the block
//! drops. DDR blocks are recycled, so a block registers once and then moves
//! many objects with ReadFixed/WriteFixed, zero-copy.
//!
//! Registered pages are locked memory: without CAP_IPC_LOCK the kernel
//! charges them to RLIMIT_MEMLOCK. Blocks past the budget (half the limit by
//! default) use plain Read/Write, which the kernel pins per request.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use io_uring::IoUring;
use parking_lot::Mutex;

use crate::ddr::HostBlock;

/// Slots in the sparse table.
pub(crate) const SLOTS: u16 = 1024;
/// The kernel's limit on one registered buffer.
const MAX_REGISTERED_BUFFER: usize = 1 << 30;

/// The ring and its registration table, shared by the engine and the
/// registrations (which unregister from wherever their block drops).
pub(crate) struct Registrar {
    /// The ring; the engine holds the lock for a whole transfer.
    pub(crate) ring: Mutex<IoUring>,
    /// Whether the sparse table exists (registration was accepted).
    table: bool,
    free: Mutex<Vec<u16>>,
    bytes: AtomicU64,
    blocks: AtomicUsize,
    budget: u64,
}

/// A block's slot; unregisters on drop.
pub(crate) struct Registration {
    registrar: Arc<Registrar>,
    slot: u16,
    bytes: u64,
}

impl Registration {
    /// The slot, if the registration belongs to `registrar`'s ring.
    pub(crate) fn slot_in(&self, registrar: &Arc<Registrar>) -> Option<u16> {
        Arc::ptr_eq(&self.registrar, registrar).then_some(self.slot)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let empty = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        let ring = self.registrar.ring.lock();
        // SAFETY: an empty iovec refers to no memory; it replaces this
        // slot's buffer, so the kernel releases the block's pages before
        // the block's memory is freed (HostBlock drops its registration
        // first).
        let released = unsafe { ring.submitter().register_buffers_update(u32::from(self.slot), &[empty], None) };
        drop(ring);
        // A slot that failed to clear still points at pages the kernel keeps
        // pinned; never hand it out again.
        if released.is_ok() {
            self.registrar.free.lock().push(self.slot);
        }
        self.registrar.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        self.registrar.blocks.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Registrar {
    /// Wraps `ring`; with `register`, creates the sparse table. Returns why
    /// registration is off, if it is.
    pub(crate) fn new(ring: IoUring, register: bool, budget: u64) -> (Arc<Self>, Option<String>) {
        let (table, note) = if !register {
            (false, Some("registered buffers off in the config: unregistered requests".to_string()))
        } else if budget == 0 {
            (false, Some("memlock budget 0: unregistered requests".to_string()))
        } else {
            match ring.submitter().register_buffers_sparse(u32::from(SLOTS)) {
                Ok(()) => (true, None),
                Err(e) => (false, Some(format!("registering a buffer table refused ({e}): unregistered requests"))),
            }
        };
        let free = if table { (0..SLOTS).rev().collect() } else { Vec::new() };
        let registrar = Registrar {
            ring: Mutex::new(ring),
            table,
            free: Mutex::new(free),
            bytes: AtomicU64::new(0),
            blocks: AtomicUsize::new(0),
            budget,
        };
        (Arc::new(registrar), note)
    }

    /// Whether blocks can be registered at all.
    pub(crate) fn has_table(&self) -> bool {
        self.table
    }

    /// Blocks registered now, and their bytes.
    pub(crate) fn registered(&self) -> (usize, u64) {
        (self.blocks.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }

    /// The memlock budget for registered blocks.
    pub(crate) fn budget(&self) -> u64 {
        self.budget
    }

    /// `block`'s slot, registering it if the budget and the table allow;
    /// `None` means unregistered requests for it. Must not be called while
    /// holding the ring lock.
    pub(crate) fn slot_for(self: &Arc<Self>, block: &HostBlock) -> Option<u16> {
        if let Some(r) = block.registration() {
            return r.slot_in(self);
        }
        let bytes = block.padded_len();
        if !self.table || bytes > MAX_REGISTERED_BUFFER {
            return None;
        }
        if self.bytes.load(Ordering::Relaxed) + bytes as u64 > self.budget {
            return None;
        }
        let slot = self.free.lock().pop()?;
        let iov = libc::iovec { iov_base: block.padded().as_ptr().cast_mut().cast(), iov_len: bytes };
        let ring = self.ring.lock();
        // SAFETY: the iovec covers the block's live allocation. The block
        // keeps the Registration made below and drops it (which clears the
        // slot) before freeing that memory, so the slot never outlives it.
        let done = unsafe { ring.submitter().register_buffers_update(u32::from(slot), &[iov], None) };
        drop(ring);
        if done.is_err() {
            self.free.lock().push(slot);
            return None;
        }
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.blocks.fetch_add(1, Ordering::Relaxed);
        let reg = Registration { registrar: self.clone(), slot, bytes: bytes as u64 };
        match block.set_registration(reg) {
            Ok(()) => Some(slot),
            // Registered concurrently elsewhere: ours unregisters on drop.
            Err(_ours) => None,
        }
    }
}
