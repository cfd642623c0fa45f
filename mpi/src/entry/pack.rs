//! `MPI_Pack` and `MPI_Unpack` with memwall's engine (CPU for host
//! buffers, GPU when either buffer is device memory).

use std::ffi::{c_int, c_void};

use crate::abi::{self, Handle, RawComm, RawDatatype};
use crate::device;
use crate::forward;
use crate::host;
use crate::state::{intercept, State};
use crate::types::Entry;

/// The entry and packed bytes of a pack of `count` elements into `size`
/// bytes at `*position`, when memwall takes it: `None` leaves errors (short
/// buffers, bad positions) and unknown types to the library.
///
/// # Safety
/// `position` is null or points to an int.
unsafe fn plan(
    s: &State,
    dt: RawDatatype,
    count: c_int,
    size: c_int,
    position: *mut c_int,
) -> Option<(std::sync::Arc<Entry>, usize, usize)> {
    if count <= 0 || size < 0 || position.is_null() {
        return None;
    }
    let e = s.types.get(dt.to_u64())?;
    let bytes = e.bytes(count)?;
    // SAFETY: non-null, per the caller.
    let pos = usize::try_from(unsafe { *position }).ok()?;
    (pos.checked_add(bytes)? <= size as usize).then_some((e, bytes, pos))
}

/// `MPI_Pack`.
///
/// # Safety
/// As `MPI_Pack`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Pack(
    inbuf: *const c_void,
    incount: c_int,
    datatype: RawDatatype,
    outbuf: *mut c_void,
    outsize: c_int,
    position: *mut c_int,
    comm: RawComm,
) -> c_int {
    let fwd = || forward!(pack, "MPI_Pack"(inbuf, incount, datatype, outbuf, outsize, position, comm));
    intercept(fwd, |s, _| {
        // SAFETY: the caller's position pointer, per MPI_Pack.
        let (e, bytes, pos) = unsafe { plan(s, datatype, incount, outsize, position) }?;
        if outbuf.is_null() {
            return None;
        }
        let dst_addr = outbuf as u64 + pos as u64;
        let count = i64::from(incount);
        match (device::locate(inbuf), device::locate(outbuf)) {
            (None, None) => {
                // SAFETY: MPI_Pack's caller provides `outsize` bytes at outbuf.
                let dst = unsafe { std::slice::from_raw_parts_mut(outbuf.cast::<u8>(), outsize as usize) };
                let mut p = pos;
                // SAFETY: MPI_Pack's caller provides `incount` elements at inbuf.
                unsafe { host::pack(&e.committed, inbuf, count, dst, &mut p) }.then_some(())?;
            }
            (Some(d), _) => device::pack_or_unpack(&e.committed, d, count, dst_addr, false).ok()?,
            (None, Some(d)) => {
                let mut tmp = s.pool.get(bytes);
                let mut p = 0;
                // SAFETY: as above; `tmp` is ours.
                unsafe { host::pack(&e.committed, inbuf, count, tmp.as_mut_slice(), &mut p) }.then_some(())?;
                device::copy(d.ordinal, dst_addr, tmp.as_slice().as_ptr() as u64, bytes).ok()?;
            }
        }
        // SAFETY: non-null (checked in plan).
        unsafe { *position = (pos + bytes) as c_int };
        s.stats.handled(bytes);
        Some(abi::SUCCESS)
    })
}

/// `MPI_Unpack`.
///
/// # Safety
/// As `MPI_Unpack`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Unpack(
    inbuf: *const c_void,
    insize: c_int,
    position: *mut c_int,
    outbuf: *mut c_void,
    outcount: c_int,
    datatype: RawDatatype,
    comm: RawComm,
) -> c_int {
    let fwd = || forward!(unpack, "MPI_Unpack"(inbuf, insize, position, outbuf, outcount, datatype, comm));
    intercept(fwd, |s, _| {
        // SAFETY: the caller's position pointer, per MPI_Unpack.
        let (e, bytes, pos) = unsafe { plan(s, datatype, outcount, insize, position) }?;
        if inbuf.is_null() {
            return None;
        }
        let src_addr = inbuf as u64 + pos as u64;
        let count = i64::from(outcount);
        match (device::locate(inbuf), device::locate(outbuf)) {
            (None, None) => {
                // SAFETY: MPI_Unpack's caller provides `insize` bytes at inbuf.
                let src = unsafe { std::slice::from_raw_parts(inbuf.cast::<u8>(), insize as usize) };
                let mut p = pos;
                // SAFETY: MPI_Unpack's caller provides `outcount` elements at outbuf.
                unsafe { host::unpack(&e.committed, src, &mut p, outbuf, count) }.then_some(())?;
            }
            (_, Some(d)) => device::pack_or_unpack(&e.committed, d, count, src_addr, true).ok()?,
            (Some(d), None) => {
                let mut tmp = s.pool.get(bytes);
                device::copy(d.ordinal, tmp.as_mut_slice().as_mut_ptr() as u64, src_addr, bytes).ok()?;
                let mut p = 0;
                // SAFETY: as above; `tmp` is ours.
                unsafe { host::unpack(&e.committed, tmp.as_slice(), &mut p, outbuf, count) }.then_some(())?;
            }
        }
        // SAFETY: non-null (checked in plan).
        unsafe { *position = (pos + bytes) as c_int };
        s.stats.handled(bytes);
        Some(abi::SUCCESS)
    })
}
