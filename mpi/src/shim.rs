//! The C shim (`csrc/shim.c`): the library's handles, status fields and
//! datatype queries through a fixed ABI (handles as u64), and
//! [`MpiTypes`], the [`TypeSource`] the decoder reads committed types from.

use std::ffi::{c_int, c_void};

use memwall::datatype::Order;

use crate::abi::{self, Handle, RawDatatype, RawRequest};
use crate::decode::{Bounds, Combiner, Contents, Envelope, TypeSource, Unsupported};

extern "C" {
    fn mw_ready() -> c_int;
    fn mw_packed() -> u64;
    fn mw_request_null() -> u64;
    fn mw_status_ignore() -> *mut c_void;
    fn mw_statuses_ignore() -> *mut c_void;
    fn mw_envelope(t: u64, ni: *mut c_int, na: *mut c_int, nd: *mut c_int, combiner: *mut c_int) -> c_int;
    fn mw_contents(
        t: u64,
        ni: c_int,
        na: c_int,
        nd: c_int,
        ints: *mut c_int,
        addrs: *mut i64,
        types: *mut u64,
    ) -> c_int;
    fn mw_bounds(t: u64, out: *mut i64) -> c_int;
    fn mw_type_free(t: u64) -> c_int;
    fn mw_status_bytes(status: *const c_void, bytes: *mut i64) -> c_int;
    fn mw_status_error(status: *const c_void) -> c_int;
    fn mw_status_cancelled(status: *const c_void, flag: *mut c_int) -> c_int;
    fn mw_world_rank(rank: *mut c_int) -> c_int;
    fn mw_test(req: *mut u64, flag: *mut c_int, status: *mut c_void) -> c_int;
    fn mw_wait(req: *mut u64, status: *mut c_void) -> c_int;
}

/// Whether every MPI symbol the shim uses resolved (libmpi is in the process).
pub fn ready() -> bool {
    // SAFETY: mw_ready only compares weak symbol addresses with NULL.
    unsafe { mw_ready() != 0 }
}

/// The library's fixed handles and ignore-pointers.
#[derive(Debug, Clone, Copy)]
pub struct Handles {
    /// `MPI_PACKED`.
    pub packed: RawDatatype,
    /// `MPI_REQUEST_NULL`.
    pub request_null: RawRequest,
    /// `MPI_STATUS_IGNORE` (as an address).
    pub status_ignore: usize,
    /// `MPI_STATUSES_IGNORE` (as an address).
    pub statuses_ignore: usize,
}

impl Handles {
    /// Reads them from the shim. Call only when [`ready`].
    pub fn load() -> Self {
        // SAFETY: the shim functions only evaluate the library's handle
        // macros, whose symbols `ready()` has checked are resolved.
        unsafe {
            Handles {
                packed: RawDatatype::from_u64(mw_packed()),
                request_null: RawRequest::from_u64(mw_request_null()),
                status_ignore: mw_status_ignore() as usize,
                statuses_ignore: mw_statuses_ignore() as usize,
            }
        }
    }
}

/// A status buffer of the library's size, 8-byte aligned.
#[derive(Debug, Clone)]
pub struct StatusBuf(Vec<u64>);

impl StatusBuf {
    /// `n` zeroed statuses.
    pub fn new(n: usize) -> Self {
        StatusBuf(vec![0u64; (n * abi::STATUS_BYTES).div_ceil(8).max(1)])
    }
    /// Pointer to status `i`.
    pub fn at(&mut self, i: usize) -> *mut c_void {
        // SAFETY: the buffer holds n * STATUS_BYTES bytes and callers index
        // below n; the offset stays inside the allocation.
        unsafe { self.0.as_mut_ptr().cast::<u8>().add(i * abi::STATUS_BYTES).cast() }
    }
}

/// Status `i` of an array of library statuses at `base`.
pub fn status_at(base: *mut c_void, i: usize) -> *mut c_void {
    base.cast::<u8>().wrapping_add(i * abi::STATUS_BYTES).cast()
}

/// Bytes of a packed receive, from its status (`None` if undefined).
///
/// # Safety
/// `status` points to a status the library filled.
pub unsafe fn status_bytes(status: *const c_void) -> Option<usize> {
    let mut n = -1i64;
    // SAFETY: the caller passes a filled status; `n` is a valid out pointer.
    let rc = unsafe { mw_status_bytes(status, &mut n) };
    (rc == abi::SUCCESS).then_some(n).and_then(|n| usize::try_from(n).ok())
}

/// The `MPI_ERROR` field of a status.
///
/// # Safety
/// `status` points to a status the library filled.
pub unsafe fn status_error(status: *const c_void) -> c_int {
    // SAFETY: the caller passes a valid status.
    unsafe { mw_status_error(status) }
}

/// Whether a status says the request was cancelled.
///
/// # Safety
/// `status` points to a status the library filled.
pub unsafe fn status_cancelled(status: *const c_void) -> bool {
    let mut flag = 0;
    // SAFETY: the caller passes a valid status; `flag` is a valid out pointer.
    let rc = unsafe { mw_status_cancelled(status, &mut flag) };
    rc == abi::SUCCESS && flag != 0
}

/// This process's rank in `MPI_COMM_WORLD`.
pub fn world_rank() -> Option<i32> {
    let mut r = -1;
    // SAFETY: called between MPI_Init and MPI_Finalize; `r` is a valid out pointer.
    (unsafe { mw_world_rank(&mut r) } == abi::SUCCESS).then_some(r)
}

/// `PMPI_Test` on a request the interposer owns; `Some(true)` when complete.
pub fn test(req: &mut RawRequest, status: &mut StatusBuf) -> Option<bool> {
    let (mut h, mut flag) = (req.to_u64(), 0);
    // SAFETY: `h` is an active request handle owned by the interposer and
    // `status` holds one library status.
    let rc = unsafe { mw_test(&mut h, &mut flag, status.at(0)) };
    *req = RawRequest::from_u64(h);
    (rc == abi::SUCCESS).then_some(flag != 0)
}

/// `PMPI_Wait` on a request the interposer owns.
pub fn wait(req: &mut RawRequest, status: &mut StatusBuf) -> c_int {
    let mut h = req.to_u64();
    // SAFETY: as in `test`.
    let rc = unsafe { mw_wait(&mut h, status.at(0)) };
    *req = RawRequest::from_u64(h);
    rc
}

/// The library as a [`TypeSource`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MpiTypes;

fn combiner(c: c_int) -> Combiner {
    match c {
        c if c == abi::COMBINER_NAMED => Combiner::Named,
        c if c == abi::COMBINER_DUP => Combiner::Dup,
        c if c == abi::COMBINER_CONTIGUOUS => Combiner::Contiguous,
        c if c == abi::COMBINER_VECTOR => Combiner::Vector,
        c if c == abi::COMBINER_HVECTOR => Combiner::Hvector,
        c if c == abi::COMBINER_INDEXED => Combiner::Indexed,
        c if c == abi::COMBINER_HINDEXED => Combiner::Hindexed,
        c if c == abi::COMBINER_INDEXED_BLOCK => Combiner::IndexedBlock,
        c if c == abi::COMBINER_HINDEXED_BLOCK => Combiner::HindexedBlock,
        c if c == abi::COMBINER_STRUCT => Combiner::Struct,
        c if c == abi::COMBINER_SUBARRAY => Combiner::Subarray,
        c if c == abi::COMBINER_RESIZED => Combiner::Resized,
        other => Combiner::Other(other),
    }
}

fn failed(what: &str, rc: c_int) -> Unsupported {
    Unsupported(format!("{what} returned {rc}"))
}

impl TypeSource for MpiTypes {
    fn envelope(&self, t: u64) -> Result<Envelope, Unsupported> {
        let (mut ni, mut na, mut nd, mut comb) = (0, 0, 0, 0);
        // SAFETY: out pointers are valid locals; the library checks the handle.
        let rc = unsafe { mw_envelope(t, &mut ni, &mut na, &mut nd, &mut comb) };
        if rc != abi::SUCCESS {
            return Err(failed("MPI_Type_get_envelope", rc));
        }
        let n = |v: c_int| usize::try_from(v).map_err(|_| Unsupported(format!("envelope count {v}")));
        Ok(Envelope { integers: n(ni)?, addresses: n(na)?, datatypes: n(nd)?, combiner: combiner(comb) })
    }

    fn contents(&self, t: u64, env: &Envelope) -> Result<Contents, Unsupported> {
        let mut ints = vec![0 as c_int; env.integers.max(1)];
        let mut addrs = vec![0i64; env.addresses.max(1)];
        let mut types = vec![0u64; env.datatypes.max(1)];
        let n = |v: usize| c_int::try_from(v).map_err(|_| Unsupported(format!("envelope count {v}")));
        // SAFETY: each array holds at least the count passed for it.
        let rc = unsafe {
            mw_contents(
                t,
                n(env.integers)?,
                n(env.addresses)?,
                n(env.datatypes)?,
                ints.as_mut_ptr(),
                addrs.as_mut_ptr(),
                types.as_mut_ptr(),
            )
        };
        if rc != abi::SUCCESS {
            return Err(failed("MPI_Type_get_contents", rc));
        }
        ints.truncate(env.integers);
        addrs.truncate(env.addresses);
        types.truncate(env.datatypes);
        Ok(Contents { ints: ints.into_iter().map(i64::from).collect(), addrs, types })
    }

    fn bounds(&self, t: u64) -> Result<Bounds, Unsupported> {
        let mut b = [0i64; 5];
        // SAFETY: `b` holds the five values mw_bounds writes.
        let rc = unsafe { mw_bounds(t, b.as_mut_ptr()) };
        if rc != abi::SUCCESS {
            return Err(failed("MPI_Type_size/get_extent", rc));
        }
        Ok(Bounds { size: b[0], lb: b[1], extent: b[2], true_lb: b[3], true_extent: b[4] })
    }

    fn free(&self, t: u64) {
        // SAFETY: `t` is a derived type handle get_contents returned to us.
        let _ = unsafe { mw_type_free(t) };
    }

    fn order(&self, value: i64) -> Option<Order> {
        match value {
            v if v == i64::from(abi::ORDER_C) => Some(Order::C),
            v if v == i64::from(abi::ORDER_FORTRAN) => Some(Order::Fortran),
            _ => None,
        }
    }
}
