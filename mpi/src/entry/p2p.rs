//! Point-to-point: derived-type messages travel as `MPI_PACKED` bytes
//! packed by memwall (`count x size` bytes; the library's own packed format
//! on a homogeneous machine, so a peer without the interposer matches too).

use std::ffi::{c_int, c_void};

use crate::abi::{self, RawComm, RawDatatype, RawRequest};
use crate::forward;
use crate::message::{message, Incoming, Outgoing};
use crate::real::Status;
use crate::shim::StatusBuf;
use crate::state::{intercept, warn, State};

/// The status to hand the library: the user's, or `own` when they ignore it
/// (a receive needs its byte count).
fn status_for(s: &State, user: Status, own: &mut StatusBuf) -> Status {
    if user as usize == s.handles.status_ignore {
        own.at(0)
    } else {
        user
    }
}

/// Unpacks a completed receive; an unpack failure becomes `MPI_ERR_INTERN`
/// (the bytes arrived but could not be placed).
fn finish(s: &State, rc: c_int, pending: crate::requests::Pending, status: Status) -> c_int {
    if rc != abi::SUCCESS {
        return rc;
    }
    // SAFETY: the library completed the receive and filled `status`; the
    // user's buffer is valid (the call has not returned yet).
    match unsafe { pending.complete(status, &s.stats) } {
        Ok(()) => rc,
        Err(e) => {
            warn(&format!("receive: {e}"));
            abi::ERR_INTERN
        }
    }
}

/// `MPI_Send`.
///
/// # Safety
/// As `MPI_Send`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Send(
    buf: *const c_void,
    count: c_int,
    datatype: RawDatatype,
    dest: c_int,
    tag: c_int,
    comm: RawComm,
) -> c_int {
    let fwd = || forward!(send, "MPI_Send"(buf, count, datatype, dest, tag, comm));
    intercept(fwd, |s, call| {
        let (e, bytes) = message(s, datatype, count, dest)?;
        // SAFETY: MPI_Send's caller provides `count` elements at buf.
        let out = unsafe { Outgoing::pack(s, &e, buf, count, bytes) }?;
        call.commit();
        let rc = forward!(send, "MPI_Send"(out.ptr(), bytes as c_int, s.handles.packed, dest, tag, comm));
        s.stats.handled(bytes);
        Some(rc)
    })
}

/// `MPI_Recv`.
///
/// # Safety
/// As `MPI_Recv`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Recv(
    buf: *mut c_void,
    count: c_int,
    datatype: RawDatatype,
    source: c_int,
    tag: c_int,
    comm: RawComm,
    status: Status,
) -> c_int {
    let fwd = || forward!(recv, "MPI_Recv"(buf, count, datatype, source, tag, comm, status));
    intercept(fwd, |s, call| {
        let (e, bytes) = message(s, datatype, count, source)?;
        let mut inc = Incoming::new(s, buf, bytes)?;
        let mut own = StatusBuf::new(1);
        let st = status_for(s, status, &mut own);
        call.commit();
        let rc = forward!(recv, "MPI_Recv"(inc.ptr(), bytes as c_int, s.handles.packed, source, tag, comm, st));
        s.stats.handled(0);
        Some(finish(s, rc, inc.into_pending(e, buf, count), st))
    })
}

/// `MPI_Isend`: the packed buffer lives with the request until completion.
///
/// # Safety
/// As `MPI_Isend`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Isend(
    buf: *const c_void,
    count: c_int,
    datatype: RawDatatype,
    dest: c_int,
    tag: c_int,
    comm: RawComm,
    request: *mut RawRequest,
) -> c_int {
    let fwd = || forward!(isend, "MPI_Isend"(buf, count, datatype, dest, tag, comm, request));
    intercept(fwd, |s, call| {
        if request.is_null() {
            return None;
        }
        let (e, bytes) = message(s, datatype, count, dest)?;
        // SAFETY: MPI_Isend's caller provides `count` elements at buf.
        let out = unsafe { Outgoing::pack(s, &e, buf, count, bytes) }?;
        call.commit();
        let rc = forward!(isend, "MPI_Isend"(out.ptr(), bytes as c_int, s.handles.packed, dest, tag, comm, request));
        if rc == abi::SUCCESS {
            // SAFETY: the library wrote the new request handle.
            s.requests.insert(unsafe { *request }, out.into_pending());
        }
        s.stats.handled(bytes);
        Some(rc)
    })
}

/// `MPI_Irecv`: the unpack runs when `MPI_Wait`/`MPI_Test` (or another
/// completion call) completes the request.
///
/// # Safety
/// As `MPI_Irecv`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Irecv(
    buf: *mut c_void,
    count: c_int,
    datatype: RawDatatype,
    source: c_int,
    tag: c_int,
    comm: RawComm,
    request: *mut RawRequest,
) -> c_int {
    let fwd = || forward!(irecv, "MPI_Irecv"(buf, count, datatype, source, tag, comm, request));
    intercept(fwd, |s, call| {
        if request.is_null() {
            return None;
        }
        let (e, bytes) = message(s, datatype, count, source)?;
        let mut inc = Incoming::new(s, buf, bytes)?;
        call.commit();
        let rc = forward!(irecv, "MPI_Irecv"(inc.ptr(), bytes as c_int, s.handles.packed, source, tag, comm, request));
        if rc == abi::SUCCESS {
            // SAFETY: the library wrote the new request handle.
            s.requests.insert(unsafe { *request }, inc.into_pending(e, buf, count));
        }
        s.stats.handled(0);
        Some(rc)
    })
}

/// `MPI_Sendrecv`: each side memwall can carry is packed; the other goes as
/// the user gave it.
///
/// # Safety
/// As `MPI_Sendrecv`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Sendrecv(
    sendbuf: *const c_void,
    sendcount: c_int,
    sendtype: RawDatatype,
    dest: c_int,
    sendtag: c_int,
    recvbuf: *mut c_void,
    recvcount: c_int,
    recvtype: RawDatatype,
    source: c_int,
    recvtag: c_int,
    comm: RawComm,
    status: Status,
) -> c_int {
    let fwd = || {
        forward!(
            sendrecv,
            "MPI_Sendrecv"(
                sendbuf, sendcount, sendtype, dest, sendtag, recvbuf, recvcount, recvtype, source, recvtag, comm,
                status
            )
        )
    };
    intercept(fwd, |s, call| {
        let send = message(s, sendtype, sendcount, dest).and_then(|(e, bytes)| {
            // SAFETY: MPI_Sendrecv's caller provides `sendcount` elements at sendbuf.
            unsafe { Outgoing::pack(s, &e, sendbuf, sendcount, bytes) }.map(|o| (o, bytes))
        });
        let recv = message(s, recvtype, recvcount, source)
            .and_then(|(e, bytes)| Incoming::new(s, recvbuf, bytes).map(|i| (i, e, bytes)));
        if send.is_none() && recv.is_none() {
            return None;
        }
        let (sptr, scount, stype) = match &send {
            Some((o, bytes)) => (o.ptr(), *bytes as c_int, s.handles.packed),
            None => (sendbuf, sendcount, sendtype),
        };
        let mut recv = recv;
        let (rptr, rcount, rtype) = match &mut recv {
            Some((i, _, bytes)) => (i.ptr(), *bytes as c_int, s.handles.packed),
            None => (recvbuf, recvcount, recvtype),
        };
        let mut own = StatusBuf::new(1);
        let st = if recv.is_some() { status_for(s, status, &mut own) } else { status };
        call.commit();
        let rc = forward!(
            sendrecv,
            "MPI_Sendrecv"(sptr, scount, stype, dest, sendtag, rptr, rcount, rtype, source, recvtag, comm, st)
        );
        s.stats.handled(send.as_ref().map_or(0, |(_, b)| *b));
        Some(match recv {
            Some((i, e, _)) => finish(s, rc, i.into_pending(e, recvbuf, recvcount), st),
            None => rc,
        })
    })
}
