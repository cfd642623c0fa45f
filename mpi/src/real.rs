//! The next definition of every intercepted MPI function, found with
//! `dlsym(RTLD_NEXT, ...)`: the library's, or a PMPI tool's preloaded after
//! this one, so tools still chain.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use crate::abi::{RawComm, RawDatatype, RawRequest};

/// `MPI_Status *` is opaque here.
pub type Status = *mut c_void;

macro_rules! real_table {
    ($($field:ident: $name:literal => fn($($arg:ty),*);)*) => {
        /// The next definitions, `None` where the process has none.
        #[derive(Debug, Clone, Copy)]
        pub struct Real {
            $(
                #[doc = concat!("`", $name, "`.")]
                pub $field: Option<unsafe extern "C" fn($($arg),*) -> c_int>,
            )*
        }

        impl Real {
            fn resolve() -> Self {
                Real {
                    $(
                        // SAFETY: the symbol, when present, is the MPI function
                        // of this name, whose C prototype is the one declared.
                        $field: unsafe { next(concat!($name, "\0")) },
                    )*
                }
            }
        }
    };
}

real_table! {
    init: "MPI_Init" => fn(*mut c_int, *mut *mut *mut c_char);
    init_thread: "MPI_Init_thread" => fn(*mut c_int, *mut *mut *mut c_char, c_int, *mut c_int);
    finalize: "MPI_Finalize" => fn();
    type_commit: "MPI_Type_commit" => fn(*mut RawDatatype);
    type_free: "MPI_Type_free" => fn(*mut RawDatatype);
    pack: "MPI_Pack" => fn(*const c_void, c_int, RawDatatype, *mut c_void, c_int, *mut c_int, RawComm);
    unpack: "MPI_Unpack" => fn(*const c_void, c_int, *mut c_int, *mut c_void, c_int, RawDatatype, RawComm);
    send: "MPI_Send" => fn(*const c_void, c_int, RawDatatype, c_int, c_int, RawComm);
    recv: "MPI_Recv" => fn(*mut c_void, c_int, RawDatatype, c_int, c_int, RawComm, Status);
    isend: "MPI_Isend" => fn(*const c_void, c_int, RawDatatype, c_int, c_int, RawComm, *mut RawRequest);
    irecv: "MPI_Irecv" => fn(*mut c_void, c_int, RawDatatype, c_int, c_int, RawComm, *mut RawRequest);
    sendrecv: "MPI_Sendrecv" => fn(
        *const c_void, c_int, RawDatatype, c_int, c_int,
        *mut c_void, c_int, RawDatatype, c_int, c_int,
        RawComm, Status
    );
    wait: "MPI_Wait" => fn(*mut RawRequest, Status);
    waitall: "MPI_Waitall" => fn(c_int, *mut RawRequest, Status);
    test: "MPI_Test" => fn(*mut RawRequest, *mut c_int, Status);
    waitany: "MPI_Waitany" => fn(c_int, *mut RawRequest, *mut c_int, Status);
    testany: "MPI_Testany" => fn(c_int, *mut RawRequest, *mut c_int, *mut c_int, Status);
    testall: "MPI_Testall" => fn(c_int, *mut RawRequest, *mut c_int, Status);
    waitsome: "MPI_Waitsome" => fn(c_int, *mut RawRequest, *mut c_int, *mut c_int, Status);
    testsome: "MPI_Testsome" => fn(c_int, *mut RawRequest, *mut c_int, *mut c_int, Status);
    request_free: "MPI_Request_free" => fn(*mut RawRequest);
}

/// `dlsym(RTLD_NEXT, name)` as a function pointer of type `F`.
///
/// # Safety
/// `F` must be an `extern "C"` function pointer type matching the symbol.
unsafe fn next<F: Copy>(name: &'static str) -> Option<F> {
    let cname = CStr::from_bytes_with_nul(name.as_bytes()).ok()?;
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name has no other
    // preconditions; it returns NULL when no later object defines the name.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, cname.as_ptr()) };
    if p.is_null() {
        return None;
    }
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: `p` is the address of the function `name`, and the caller
    // guarantees `F` is a function pointer type of that function.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

/// The table, resolved on first use.
pub fn real() -> &'static Real {
    static REAL: OnceLock<Real> = OnceLock::new();
    REAL.get_or_init(Real::resolve)
}

/// What an intercepted call returns when the process has no next definition
/// (no MPI library at all): the error, said once per function on stderr.
pub fn missing(name: &str) -> c_int {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "memwall-mpi: no MPI library defines {name}; returning an error");
    crate::abi::ERR_OTHER
}

/// Calls the next definition of a function, or returns [`missing`]'s error.
#[macro_export]
#[doc(hidden)]
macro_rules! forward {
    ($field:ident, $name:literal ($($arg:expr),*)) => {
        match $crate::real::real().$field {
            // SAFETY: the arguments are the caller's, passed through unchanged
            // to the function of the same prototype.
            Some(f) => unsafe { f($($arg),*) },
            None => $crate::real::missing($name),
        }
    };
}
