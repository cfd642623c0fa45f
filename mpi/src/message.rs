//! The packed bytes of one message: packed from the user's buffer before a
//! send ([`Outgoing`]), or a buffer to receive into and unpack from
//! ([`Incoming`]); host buffers pack with the CPU engine, device buffers on
//! the GPU with the method the model picks.

use std::ffi::{c_int, c_void};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::abi::{self, Handle, RawDatatype};
use crate::device::{self, DevPtr, Wire};
use crate::pool::PooledBuf;
use crate::requests::Pending;
use crate::state::{warn, State};
use crate::types::Entry;

/// The type entry and packed size of a message memwall should carry, or
/// `None` to leave it to the library (no count, `MPI_PROC_NULL`, a type not
/// cached, a dense type, more bytes than an `int` counts).
pub fn message(s: &State, dt: RawDatatype, count: c_int, peer: c_int) -> Option<(Arc<Entry>, usize)> {
    if count <= 0 || peer == abi::PROC_NULL {
        return None;
    }
    let e = s.types.get(dt.to_u64())?;
    if e.dense {
        return None;
    }
    let bytes = e.bytes(count)?;
    (bytes > 0).then_some((e, bytes))
}

/// Packed bytes ready to send.
#[derive(Debug)]
pub enum Outgoing {
    /// Host memory.
    Host(PooledBuf<'static>),
    /// A device method's buffer.
    Device(Wire),
}

impl Outgoing {
    /// Packs `count` elements of `e` at `buf`; `None` when the engine
    /// cannot or a host message is below the cutoff
    /// ([`crate::config::HOST_MIN_BYTES_ENV`]): the call then goes to the
    /// library as it is.
    ///
    /// # Safety
    /// `buf` holds `count` elements of the type, readable (MPI's contract).
    pub unsafe fn pack(s: &'static State, e: &Entry, buf: *const c_void, count: c_int, bytes: usize) -> Option<Self> {
        match device::locate(buf) {
            None if bytes < s.config.host_min_bytes => None,
            None => {
                let mut out = s.pool.get(bytes);
                let mut pos = 0;
                // SAFETY: per this function's contract.
                let ok =
                    unsafe { crate::host::pack(&e.committed, buf, i64::from(count), out.as_mut_slice(), &mut pos) };
                ok.then_some(Outgoing::Host(out))
            }
            Some(d) => {
                let method = s.model.choose(bytes as u64);
                match device::stage_out(&e.committed, d, i64::from(count), method) {
                    Ok(w) => {
                        s.stats.device.fetch_add(1, Ordering::Relaxed);
                        Some(Outgoing::Device(w))
                    }
                    Err(why) => {
                        if s.config.debug {
                            warn(&format!("device pack ({method}) failed, passing through: {why}"));
                        }
                        None
                    }
                }
            }
        }
    }

    /// The address to send from.
    pub fn ptr(&self) -> *const c_void {
        match self {
            Outgoing::Host(b) => b.as_slice().as_ptr().cast(),
            Outgoing::Device(w) => w.ptr(),
        }
    }

    /// What a non-blocking send keeps until completion.
    pub fn into_pending(self) -> Pending {
        match self {
            Outgoing::Host(b) => Pending::Send(b),
            Outgoing::Device(w) => Pending::DeviceSend(w),
        }
    }
}

/// A buffer to receive packed bytes into.
#[derive(Debug)]
pub enum Incoming {
    /// Host memory.
    Host(PooledBuf<'static>),
    /// A device method's buffer, for the user's device buffer.
    Device(Wire, DevPtr),
}

impl Incoming {
    /// The receive buffer for `bytes` packed bytes bound for `buf`; `None`
    /// leaves the receive to the library (as [`Outgoing::pack`]).
    pub fn new(s: &'static State, buf: *mut c_void, bytes: usize) -> Option<Self> {
        match device::locate(buf) {
            None if bytes < s.config.host_min_bytes => None,
            None => Some(Incoming::Host(s.pool.get(bytes))),
            Some(d) => {
                let method = s.model.choose(bytes as u64);
                match device::stage_in(d.ordinal, bytes, method) {
                    Ok(w) => {
                        s.stats.device.fetch_add(1, Ordering::Relaxed);
                        Some(Incoming::Device(w, d))
                    }
                    Err(why) => {
                        if s.config.debug {
                            warn(&format!("device receive ({method}) failed, passing through: {why}"));
                        }
                        None
                    }
                }
            }
        }
    }

    /// The address to receive into.
    pub fn ptr(&mut self) -> *mut c_void {
        match self {
            Incoming::Host(b) => b.as_mut_slice().as_mut_ptr().cast(),
            Incoming::Device(w, _) => w.ptr(),
        }
    }

    /// The unpack owed to `count` elements of `e` at `buf` at completion.
    pub fn into_pending(self, e: Arc<Entry>, buf: *mut c_void, count: c_int) -> Pending {
        match self {
            Incoming::Host(b) => Pending::Recv { buf: b, entry: e, dst: buf as usize, count: i64::from(count) },
            Incoming::Device(w, d) => Pending::DeviceRecv { wire: w, entry: e, dst: d, count: i64::from(count) },
        }
    }
}
