//! Completion: `MPI_Wait`, `MPI_Waitall`, `MPI_Test` (the set) and
//! `MPI_Waitany`, `MPI_Testany`, `MPI_Testall`, `MPI_Waitsome`,
//! `MPI_Testsome`, `MPI_Request_free`, so a request the interposer started
//! is finished whichever call completes it.
//!
//! Each call takes the interposer's entries for its requests out, calls the
//! library, then settles every entry from the request's new value (see
//! [`crate::requests`]). Requests the interposer did not start pass through.

use std::ffi::c_int;

use crate::abi::{self, RawRequest};
use crate::forward;
use crate::real::Status;
use crate::requests::Pending;
use crate::shim::{self, StatusBuf};
use crate::state::{intercept, warn, State};

/// Statuses to hand the library: the user's, or our own when they ignore
/// them (a receive needs its byte count, an error its status).
struct Statuses {
    base: Status,
    _own: Option<StatusBuf>,
}

impl Statuses {
    fn new(user: Status, ignore: usize, n: usize) -> Self {
        if user as usize == ignore {
            let mut own = StatusBuf::new(n);
            Statuses { base: own.at(0), _own: Some(own) }
        } else {
            Statuses { base: user, _own: None }
        }
    }

    fn at(&self, i: usize) -> Status {
        shim::status_at(self.base, i)
    }
}

/// Settles one taken entry after the library call: still active (handle
/// unchanged) goes back; completed is finished when `ok`, dropped otherwise.
fn settle(s: &State, before: RawRequest, p: Pending, after: RawRequest, ok: bool, status: Status) -> bool {
    if after != s.handles.request_null {
        s.requests.insert(before, p);
        return true;
    }
    if !ok {
        return true;
    }
    // SAFETY: the library completed this request and filled `status` for it.
    match unsafe { p.complete(status, &s.stats) } {
        Ok(()) => true,
        Err(e) => {
            warn(&format!("completing a request: {e}"));
            false
        }
    }
}

/// Whether entry `i` completed without error: the call succeeded, or it
/// reported errors in statuses and this one's is `MPI_SUCCESS`.
fn ok_at(rc: c_int, st: &Statuses, i: usize) -> bool {
    // SAFETY: with MPI_ERR_IN_STATUS the library filled every status.
    rc == abi::SUCCESS || (rc == abi::ERR_IN_STATUS && unsafe { shim::status_error(st.at(i)) } == abi::SUCCESS)
}

fn result(rc: c_int, all_settled: bool) -> c_int {
    if rc == abi::SUCCESS && !all_settled {
        abi::ERR_INTERN
    } else {
        rc
    }
}

/// The requests of an array call, copied, with the interposer's entries
/// taken out; `None` when it owns none of them.
///
/// # Safety
/// `reqs` points to `n` requests.
unsafe fn take_array(s: &State, n: c_int, reqs: *mut RawRequest) -> Option<(Vec<RawRequest>, Vec<Option<Pending>>)> {
    s.requests.progress_detached(false, &s.stats);
    let n = usize::try_from(n).ok().filter(|&n| n > 0)?;
    if reqs.is_null() || s.requests.is_empty() {
        return None;
    }
    // SAFETY: per the caller.
    let before = unsafe { std::slice::from_raw_parts(reqs, n) }.to_vec();
    let taken = s.requests.take(&before);
    taken.iter().any(Option::is_some).then_some((before, taken))
}

/// A copy of the request array after the call.
///
/// # Safety
/// As [`take_array`].
unsafe fn after(reqs: *const RawRequest, n: usize) -> Vec<RawRequest> {
    // SAFETY: per the caller.
    unsafe { std::slice::from_raw_parts(reqs, n) }.to_vec()
}

/// `MPI_Wait`.
///
/// # Safety
/// As `MPI_Wait`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Wait(request: *mut RawRequest, status: Status) -> c_int {
    let fwd = || forward!(wait, "MPI_Wait"(request, status));
    intercept(fwd, |s, call| {
        // SAFETY: MPI_Wait's caller passes one valid request.
        let (before, mut taken) = unsafe { take_array(s, 1, request) }?;
        let p = taken.pop().flatten()?;
        let st = Statuses::new(status, s.handles.status_ignore, 1);
        call.commit();
        let rc = forward!(wait, "MPI_Wait"(request, st.at(0)));
        // SAFETY: as above.
        let now = unsafe { *request };
        let settled = settle(s, before[0], p, now, rc == abi::SUCCESS, st.at(0));
        s.stats.handled(0);
        Some(result(rc, settled))
    })
}

/// `MPI_Test`.
///
/// # Safety
/// As `MPI_Test`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Test(request: *mut RawRequest, flag: *mut c_int, status: Status) -> c_int {
    let fwd = || forward!(test, "MPI_Test"(request, flag, status));
    intercept(fwd, |s, call| {
        if flag.is_null() {
            return None;
        }
        // SAFETY: MPI_Test's caller passes one valid request.
        let (before, mut taken) = unsafe { take_array(s, 1, request) }?;
        let p = taken.pop().flatten()?;
        let st = Statuses::new(status, s.handles.status_ignore, 1);
        call.commit();
        let rc = forward!(test, "MPI_Test"(request, flag, st.at(0)));
        // SAFETY: as above; `flag` is non-null.
        let (now, done) = unsafe { (*request, *flag != 0) };
        let settled = settle(s, before[0], p, now, rc == abi::SUCCESS && done, st.at(0));
        s.stats.handled(0);
        Some(result(rc, settled))
    })
}

/// `MPI_Waitall`.
///
/// # Safety
/// As `MPI_Waitall`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Waitall(count: c_int, requests: *mut RawRequest, statuses: Status) -> c_int {
    let fwd = || forward!(waitall, "MPI_Waitall"(count, requests, statuses));
    intercept(fwd, |s, call| {
        // SAFETY: MPI_Waitall's caller passes `count` requests.
        let (before, taken) = unsafe { take_array(s, count, requests) }?;
        let st = Statuses::new(statuses, s.handles.statuses_ignore, before.len());
        call.commit();
        let rc = forward!(waitall, "MPI_Waitall"(count, requests, st.at(0)));
        // SAFETY: as above.
        let now = unsafe { after(requests, before.len()) };
        let mut settled = true;
        for (i, p) in taken.into_iter().enumerate() {
            if let Some(p) = p {
                settled &= settle(s, before[i], p, now[i], ok_at(rc, &st, i), st.at(i));
            }
        }
        s.stats.handled(0);
        Some(result(rc, settled))
    })
}

/// `MPI_Testall`.
///
/// # Safety
/// As `MPI_Testall`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Testall(
    count: c_int,
    requests: *mut RawRequest,
    flag: *mut c_int,
    statuses: Status,
) -> c_int {
    let fwd = || forward!(testall, "MPI_Testall"(count, requests, flag, statuses));
    intercept(fwd, |s, call| {
        if flag.is_null() {
            return None;
        }
        // SAFETY: MPI_Testall's caller passes `count` requests.
        let (before, taken) = unsafe { take_array(s, count, requests) }?;
        let st = Statuses::new(statuses, s.handles.statuses_ignore, before.len());
        call.commit();
        let rc = forward!(testall, "MPI_Testall"(count, requests, flag, st.at(0)));
        // SAFETY: as above; `flag` is non-null.
        let (now, done) = unsafe { (after(requests, before.len()), *flag != 0) };
        let mut settled = true;
        for (i, p) in taken.into_iter().enumerate() {
            if let Some(p) = p {
                settled &= settle(s, before[i], p, now[i], done && ok_at(rc, &st, i), st.at(i));
            }
        }
        s.stats.handled(0);
        Some(result(rc, settled))
    })
}

/// Settles after a call that completed at most request `index`.
fn settle_one(
    s: &State,
    before: &[RawRequest],
    taken: Vec<Option<Pending>>,
    now: &[RawRequest],
    ok: bool,
    st: Status,
) -> bool {
    let mut settled = true;
    for (i, p) in taken.into_iter().enumerate() {
        if let Some(p) = p {
            settled &= settle(s, before[i], p, now[i], ok, st);
        }
    }
    settled
}

/// `MPI_Waitany`.
///
/// # Safety
/// As `MPI_Waitany`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Waitany(
    count: c_int,
    requests: *mut RawRequest,
    index: *mut c_int,
    status: Status,
) -> c_int {
    let fwd = || forward!(waitany, "MPI_Waitany"(count, requests, index, status));
    intercept(fwd, |s, call| {
        if index.is_null() {
            return None;
        }
        // SAFETY: MPI_Waitany's caller passes `count` requests.
        let (before, taken) = unsafe { take_array(s, count, requests) }?;
        let st = Statuses::new(status, s.handles.status_ignore, 1);
        call.commit();
        let rc = forward!(waitany, "MPI_Waitany"(count, requests, index, st.at(0)));
        // SAFETY: as above. Only the completed request changed to null.
        let now = unsafe { after(requests, before.len()) };
        let settled = settle_one(s, &before, taken, &now, rc == abi::SUCCESS, st.at(0));
        s.stats.handled(0);
        Some(result(rc, settled))
    })
}

/// `MPI_Testany`.
///
/// # Safety
/// As `MPI_Testany`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Testany(
    count: c_int,
    requests: *mut RawRequest,
    index: *mut c_int,
    flag: *mut c_int,
    status: Status,
) -> c_int {
    let fwd = || forward!(testany, "MPI_Testany"(count, requests, index, flag, status));
    intercept(fwd, |s, call| {
        if index.is_null() || flag.is_null() {
            return None;
        }
        // SAFETY: MPI_Testany's caller passes `count` requests.
        let (before, taken) = unsafe { take_array(s, count, requests) }?;
        let st = Statuses::new(status, s.handles.status_ignore, 1);
        call.commit();
        let rc = forward!(testany, "MPI_Testany"(count, requests, index, flag, st.at(0)));
        // SAFETY: as above.
        let now = unsafe { after(requests, before.len()) };
        let settled = settle_one(s, &before, taken, &now, rc == abi::SUCCESS, st.at(0));
        s.stats.handled(0);
        Some(result(rc, settled))
    })
}

/// The arguments of `MPI_Waitsome` / `MPI_Testsome` (the same for both).
struct SomeArgs {
    testing: bool,
    incount: c_int,
    requests: *mut RawRequest,
    outcount: *mut c_int,
    indices: *mut c_int,
    statuses: Status,
}

/// `MPI_Waitsome` and `MPI_Testsome`.
///
/// # Safety
/// The arguments are those of `MPI_Waitsome`.
unsafe fn some(s: &'static State, call: &crate::state::Call, a: SomeArgs) -> Option<c_int> {
    if a.outcount.is_null() || a.indices.is_null() {
        return None;
    }
    // SAFETY: the caller passes `incount` requests.
    let (before, taken) = unsafe { take_array(s, a.incount, a.requests) }?;
    let st = Statuses::new(a.statuses, s.handles.statuses_ignore, before.len());
    call.commit();
    let rc = if a.testing {
        forward!(testsome, "MPI_Testsome"(a.incount, a.requests, a.outcount, a.indices, st.at(0)))
    } else {
        forward!(waitsome, "MPI_Waitsome"(a.incount, a.requests, a.outcount, a.indices, st.at(0)))
    };
    // SAFETY: as above.
    let now = unsafe { after(a.requests, before.len()) };
    // SAFETY: outcount is non-null.
    let out = usize::try_from(unsafe { *a.outcount }).unwrap_or(0).min(before.len());
    let done: Vec<c_int> = if out == 0 {
        Vec::new()
    } else {
        // SAFETY: the library wrote `out` indices.
        unsafe { std::slice::from_raw_parts(a.indices, out) }.to_vec()
    };
    let mut settled = true;
    for (i, p) in taken.into_iter().enumerate() {
        if let Some(p) = p {
            // Statuses of Waitsome/Testsome follow the order of `indices`.
            let k = done.iter().position(|&j| usize::try_from(j) == Ok(i));
            let (ok, status) = match k {
                Some(k) => (ok_at(rc, &st, k), st.at(k)),
                None => (false, st.at(0)),
            };
            settled &= settle(s, before[i], p, now[i], ok, status);
        }
    }
    s.stats.handled(0);
    Some(result(rc, settled))
}

/// `MPI_Waitsome`.
///
/// # Safety
/// As `MPI_Waitsome`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Waitsome(
    incount: c_int,
    requests: *mut RawRequest,
    outcount: *mut c_int,
    indices: *mut c_int,
    statuses: Status,
) -> c_int {
    let fwd = || forward!(waitsome, "MPI_Waitsome"(incount, requests, outcount, indices, statuses));
    // SAFETY: the arguments are MPI_Waitsome's.
    intercept(fwd, |s, call| unsafe {
        some(s, call, SomeArgs { testing: false, incount, requests, outcount, indices, statuses })
    })
}

/// `MPI_Testsome`.
///
/// # Safety
/// As `MPI_Testsome`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Testsome(
    incount: c_int,
    requests: *mut RawRequest,
    outcount: *mut c_int,
    indices: *mut c_int,
    statuses: Status,
) -> c_int {
    let fwd = || forward!(testsome, "MPI_Testsome"(incount, requests, outcount, indices, statuses));
    // SAFETY: the arguments are MPI_Testsome's.
    intercept(fwd, |s, call| unsafe {
        some(s, call, SomeArgs { testing: true, incount, requests, outcount, indices, statuses })
    })
}

/// `MPI_Request_free`: a request the interposer started is kept and
/// completed by the interposer (its packed buffer must outlive the
/// transfer; a receive still owes its unpack), at its next completion call
/// or at `MPI_Finalize` at the latest.
///
/// # Safety
/// As `MPI_Request_free`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Request_free(request: *mut RawRequest) -> c_int {
    let fwd = || forward!(request_free, "MPI_Request_free"(request));
    intercept(fwd, |s, _| {
        // SAFETY: MPI_Request_free's caller passes one valid request.
        let (before, mut taken) = unsafe { take_array(s, 1, request) }?;
        let p = taken.pop().flatten()?;
        s.requests.detach(before[0], p);
        // SAFETY: as above.
        unsafe { *request = s.handles.request_null };
        s.stats.handled(0);
        Some(abi::SUCCESS)
    })
}
