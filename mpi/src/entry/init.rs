//! `MPI_Init`, `MPI_Init_thread`, `MPI_Finalize`.

use std::ffi::{c_char, c_int};

use crate::abi;
use crate::forward;
use crate::state::{self, guard};

/// `MPI_Init`: the library's, then the interposer starts.
///
/// # Safety
/// As `MPI_Init`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Init(argc: *mut c_int, argv: *mut *mut *mut c_char) -> c_int {
    let rc = forward!(init, "MPI_Init"(argc, argv));
    if rc == abi::SUCCESS {
        guard(state::start);
    }
    rc
}

/// `MPI_Init_thread`: the library's, then the interposer starts. The
/// interposer is thread-safe at every level the library provides.
///
/// # Safety
/// As `MPI_Init_thread`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Init_thread(
    argc: *mut c_int,
    argv: *mut *mut *mut c_char,
    required: c_int,
    provided: *mut c_int,
) -> c_int {
    let rc = forward!(init_thread, "MPI_Init_thread"(argc, argv, required, provided));
    if rc == abi::SUCCESS {
        guard(state::start);
    }
    rc
}

/// `MPI_Finalize`: the interposer finishes (and prints its counts with
/// `MEMWALL_MPI_STATS=1`), then the library's.
///
/// # Safety
/// As `MPI_Finalize`.
#[no_mangle]
pub unsafe extern "C" fn MPI_Finalize() -> c_int {
    guard(state::finish);
    forward!(finalize, "MPI_Finalize"())
}
