//! `MPI_Type_commit` and `MPI_Type_free`: the type cache's lifetime.

use std::ffi::c_int;

use crate::abi::{self, Handle, RawDatatype};
use crate::forward;
use crate::state::{active, guard};

/// `MPI_Type_commit`: the library's, then memwall reads the type.
///
/// # Safety
/// As `MPI_Type_commit`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Type_commit(datatype: *mut RawDatatype) -> c_int {
    let rc = forward!(type_commit, "MPI_Type_commit"(datatype));
    if rc == abi::SUCCESS && !datatype.is_null() {
        // SAFETY: the library just committed the handle `datatype` points to.
        let t = unsafe { *datatype };
        guard(|| {
            if let Some(s) = active() {
                if s.commit(t) {
                    s.stats.handled(0);
                } else {
                    s.stats.pass();
                }
            }
        });
    }
    rc
}

/// `MPI_Type_free`: memwall drops its entry, then the library frees.
///
/// # Safety
/// As `MPI_Type_free`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Type_free(datatype: *mut RawDatatype) -> c_int {
    if !datatype.is_null() {
        // SAFETY: the caller passes a valid pointer to a handle.
        let t = unsafe { *datatype };
        guard(|| {
            if let Some(s) = active() {
                if s.types.remove(t.to_u64()) {
                    s.stats.handled(0);
                } else {
                    s.stats.pass();
                }
            }
        });
    }
    forward!(type_free, "MPI_Type_free"(datatype))
}
