//! memwall-mpi: the `LD_PRELOAD` MPI interposer (`libmemwall_mpi.so`).
//!
//! The interposer lands with the MPI work. Today the cdylib exports one
//! symbol, [`memwall_mpi_version`], so that the build, the shared-library
//! output and CI are in place.

/// The interposer's version as a NUL-terminated C string, for `dlsym` checks.
#[no_mangle]
pub extern "C" fn memwall_mpi_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
