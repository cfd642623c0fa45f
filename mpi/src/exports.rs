//! C entry points of the library itself (not MPI's): version, build mode
//! and the GPU hooks the measure program (`tests/c/measure.c`) finds with
//! `dlsym`. Each catches panics; none needs MPI.

use std::ffi::{c_char, c_int, c_void};
use std::panic::catch_unwind;

/// The interposer's version as a NUL-terminated C string, for `dlsym` checks.
#[no_mangle]
pub extern "C" fn memwall_mpi_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// 1 when this build defines the MPI entry points, 0 when it is a pure
/// passthrough (built without MPI).
#[no_mangle]
pub extern "C" fn memwall_mpi_interposer_built() -> c_int {
    c_int::from(crate::interposer_built())
}

/// Measures GPU pack and copy times for `bytes` packed bytes on device 0,
/// writing `[pack_device, pack_mapped, d2h, h2d]` seconds per operation to
/// `out`. Returns 0, or -1 without a usable GPU (or on any failure).
///
/// # Safety
/// `out` points to 4 writable doubles.
#[no_mangle]
pub unsafe extern "C" fn memwall_mpi_gpu_measure(bytes: u64, reps: c_int, out: *mut f64) -> c_int {
    if out.is_null() {
        return -1;
    }
    let r = catch_unwind(|| crate::device::measure(bytes as usize, usize::try_from(reps).unwrap_or(1)));
    match r {
        Ok(Ok(v)) => {
            // SAFETY: the caller provides 4 doubles at `out`.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), out, 4) };
            0
        }
        _ => -1,
    }
}

/// `bytes` of device memory on device 0 (NULL without a GPU).
#[no_mangle]
pub extern "C" fn memwall_mpi_gpu_alloc(bytes: u64) -> *mut c_void {
    match catch_unwind(|| crate::device::alloc_for_measure(bytes as usize)) {
        Ok(Ok(p)) => p as *mut c_void,
        _ => std::ptr::null_mut(),
    }
}

/// Frees what `memwall_mpi_gpu_alloc` returned.
#[no_mangle]
pub extern "C" fn memwall_mpi_gpu_free(p: *mut c_void) {
    let _ = catch_unwind(|| crate::device::free_for_measure(p as u64));
}
