//! Non-blocking operations the interposer started: the packed buffer each
//! one owns, and the unpack a receive owes its user at completion.
//!
//! Entries are keyed by request handle. A completion call takes its entries
//! out before calling the library and settles each afterwards from what the
//! library did to the request: set to `MPI_REQUEST_NULL` means completed
//! (unpack on success, drop on error); unchanged means still active (put
//! back). MPI forbids two threads completing one request at once, so taking
//! an entry out never races another completion; and a handle can only be
//! reused by the library after it completed, so a stale entry met at insert
//! is safe to drop.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::abi::{Handle, RawRequest};
use crate::device::{self, DevPtr, Wire};
use crate::handle_map::HandleMap;
use crate::pool::PooledBuf;
use crate::shim;
use crate::stats::Stats;
use crate::types::Entry;

/// What a request owns until it completes.
#[derive(Debug)]
pub enum Pending {
    /// A send of packed host bytes.
    Send(PooledBuf<'static>),
    /// A receive into packed host bytes, unpacked into `count` elements at `dst`.
    Recv {
        /// The packed bytes.
        buf: PooledBuf<'static>,
        /// The type.
        entry: Arc<Entry>,
        /// The user's buffer address.
        dst: usize,
        /// Elements the user posted.
        count: i64,
    },
    /// A send from a device method's buffer.
    DeviceSend(Wire),
    /// A receive into a device method's buffer, unpacked on the GPU.
    DeviceRecv {
        /// The packed bytes.
        wire: Wire,
        /// The type.
        entry: Arc<Entry>,
        /// The user's device buffer.
        dst: DevPtr,
        /// Elements the user posted.
        count: i64,
    },
}

impl Pending {
    /// Whether completing it needs the status (the received byte count).
    pub fn needs_status(&self) -> bool {
        matches!(self, Pending::Recv { .. } | Pending::DeviceRecv { .. })
    }

    /// Finishes a request the library completed successfully with `status`:
    /// unpacks a receive (unless it was cancelled) and frees the buffer.
    ///
    /// # Safety
    /// `status` is the library's status of this request; a receive's user
    /// buffer is still valid (MPI's contract until completion).
    pub unsafe fn complete(self, status: *const c_void, stats: &Stats) -> Result<(), String> {
        match self {
            Pending::Send(_) | Pending::DeviceSend(_) => Ok(()),
            Pending::Recv { buf, entry, dst, count } => {
                // SAFETY: the caller passes the library's status.
                let Some(n) = (unsafe { received(status) })? else { return Ok(()) };
                let data = buf.as_slice().get(..n).ok_or_else(|| format!("{n} bytes received into {}", buf.len()))?;
                // SAFETY: the user's receive buffer holds `count` elements
                // and is theirs to write until completion (MPI's contract).
                if !unsafe { crate::host::unpack_received(&entry.committed, data, dst as *mut c_void, count) } {
                    return Err(format!("unpacking {n} bytes failed"));
                }
                stats.bytes(n);
                Ok(())
            }
            Pending::DeviceRecv { wire, entry, dst, count } => {
                // SAFETY: as above.
                let Some(n) = (unsafe { received(status) })? else { return Ok(()) };
                device::finish_in(&entry.committed, wire, n, dst, count)?;
                stats.bytes(n);
                Ok(())
            }
        }
    }
}

/// Bytes received, or `None` for a cancelled receive.
///
/// # Safety
/// `status` is a status the library filled.
unsafe fn received(status: *const c_void) -> Result<Option<usize>, String> {
    // SAFETY: per the caller.
    if unsafe { shim::status_cancelled(status) } {
        return Ok(None);
    }
    // SAFETY: per the caller.
    unsafe { shim::status_bytes(status) }.map(Some).ok_or_else(|| "the status has no byte count".to_string())
}

/// The table of pending requests.
#[derive(Debug, Default)]
pub struct Requests {
    map: Mutex<HandleMap<Pending>>,
    live: AtomicUsize,
    detached: Mutex<Vec<(RawRequest, Pending)>>,
    detached_count: AtomicUsize,
}

impl Requests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HandleMap<Pending>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `p` for request `r`.
    pub fn insert(&self, r: RawRequest, p: Pending) {
        let mut m = self.lock();
        // A stale entry for a reused handle belongs to a completed request.
        if m.insert(r.to_u64(), p).is_none() {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the entries of `reqs` out, index by index (`None` for requests
    /// the interposer does not own). Cheap when it owns none at all.
    pub fn take(&self, reqs: &[RawRequest]) -> Vec<Option<Pending>> {
        if self.live.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let mut m = self.lock();
        let out: Vec<Option<Pending>> = reqs.iter().map(|r| m.remove(&r.to_u64())).collect();
        let n = out.iter().filter(|p| p.is_some()).count();
        self.live.fetch_sub(n, Ordering::Relaxed);
        out
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps `p` for request `r` the user freed with `MPI_Request_free`; the
    /// interposer completes it itself ([`Requests::progress_detached`]).
    pub fn detach(&self, r: RawRequest, p: Pending) {
        let mut d = self.detached.lock().unwrap_or_else(PoisonError::into_inner);
        d.push((r, p));
        self.detached_count.store(d.len(), Ordering::Relaxed);
    }

    /// Tests detached requests (`wait` completes them all, for Finalize).
    pub fn progress_detached(&self, wait: bool, stats: &Stats) {
        if self.detached_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let list = {
            let mut d = self.detached.lock().unwrap_or_else(PoisonError::into_inner);
            self.detached_count.store(0, Ordering::Relaxed);
            std::mem::take(&mut *d)
        };
        let mut keep = Vec::new();
        for (mut r, p) in list {
            let mut st = shim::StatusBuf::new(1);
            let done = if wait {
                shim::wait(&mut r, &mut st) == crate::abi::SUCCESS
            } else {
                match shim::test(&mut r, &mut st) {
                    Some(true) => true,
                    Some(false) => {
                        keep.push((r, p));
                        continue;
                    }
                    None => false,
                }
            };
            if done {
                // SAFETY: the status was just filled by the library for `r`.
                if let Err(e) = unsafe { p.complete(st.at(0), stats) } {
                    crate::state::warn(&format!("completing a freed request: {e}"));
                }
            }
        }
        if !keep.is_empty() {
            let mut d = self.detached.lock().unwrap_or_else(PoisonError::into_inner);
            d.extend(keep);
            self.detached_count.store(d.len(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pool;

    static POOL: Pool = Pool::new();

    fn req(v: u64) -> RawRequest {
        RawRequest::from_u64(v)
    }

    #[test]
    fn take_is_per_index_and_a_reused_handle_replaces_the_stale_entry() {
        let r = Requests::default();
        assert!(r.take(&[req(1)]).is_empty(), "nothing owned: fast path");
        r.insert(req(5), Pending::Send(POOL.get(10)));
        r.insert(req(5), Pending::Send(POOL.get(20)));
        r.insert(req(9), Pending::Send(POOL.get(30)));
        assert_eq!(r.len(), 2);
        let t = r.take(&[req(4), req(5)]);
        assert!(t[0].is_none());
        match &t[1] {
            Some(Pending::Send(b)) => assert_eq!(b.len(), 20, "the newer entry wins"),
            other => panic!("{other:?}"),
        }
        assert!(!t[1].as_ref().is_some_and(Pending::needs_status));
        assert_eq!(r.len(), 1);
        assert!(r.take(&[req(9)])[0].is_some());
        assert!(r.is_empty());
    }
}
