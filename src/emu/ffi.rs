//! The C ABI of the emulator runtime (kernels/emu/runtime.cpp and the
//! registry build.rs generates).

use std::ffi::{c_char, c_int, c_uint, c_void};

/// `memwall_emu::KernelEntry` (kernels/emu/include/memwall_emu/registry.h).
#[repr(C)]
pub struct KernelEntry {
    pub name: *const c_char,
    pub invoke: *const c_void,
    pub param_count: c_uint,
    pub param_sizes: *const c_uint,
}

extern "C" {
    /// The entry `kernel` of module `module`, or null.
    pub fn memwall_emu_find(module: *const c_char, kernel: *const c_char) -> *const KernelEntry;

    /// Runs a grid; 0 on success, else 1 with a message in `err`.
    pub fn memwall_emu_launch(
        entry: *const KernelEntry,
        grid: *const u32,
        block: *const u32,
        smem_bytes: usize,
        args: *const *mut c_void,
        workers: c_uint,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}
