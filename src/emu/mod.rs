//! The CPU kernel emulator: runs the unmodified `kernels/*.cu` on the CPU with
//! CUDA semantics, through the same [`LaunchPlan`] the CUDA executor runs.
//!
//! The kernels are compiled by g++ with the headers in `kernels/emu/include`
//! (cargo feature `emu`). Blocks run on a pool of CPU threads; the threads of
//! a block are cooperative fibers; barriers, warp shuffles and votes, and the
//! tensor-core and async-copy primitives of `kernels/include/memwall/prim`
//! behave as the PTX ISA specifies. Faults a GPU would hide or crash on come
//! back as [`Error::Emulator`] naming the kernel, block and thread: barrier
//! divergence, warp collectives whose masks disagree with the lanes calling
//! them, deadlock, dynamic shared memory out of bounds, stack overflow.

mod ffi;

use std::ffi::{c_char, c_void, CStr, CString};

use crate::error::{Error, Result};
use crate::gpu::{ArgValue, KernelArg, LaunchPlan};

/// A host buffer bound to one slot of a plan.
pub enum HostBind<'a> {
    /// For a slot the kernel only reads.
    Read(&'a [u8]),
    /// For a slot the kernel writes.
    Write(&'a mut [u8]),
}

impl<'a> HostBind<'a> {
    /// Binds a typed slice read-only.
    pub fn read<T: bytemuck::Pod>(s: &'a [T]) -> Self {
        HostBind::Read(bytemuck::cast_slice(s))
    }

    /// Binds a typed slice writable.
    pub fn write<T: bytemuck::Pod>(s: &'a mut [T]) -> Self {
        HostBind::Write(bytemuck::cast_slice_mut(s))
    }

    fn range(&mut self) -> (*mut u8, usize) {
        match self {
            // The kernel only reads a Read slot (checked against the plan), so
            // the pointer's mutability is never used.
            HostBind::Read(s) => (s.as_ptr().cast_mut(), s.len()),
            HostBind::Write(s) => (s.as_mut_ptr(), s.len()),
        }
    }
}

/// Runs launch plans on the CPU.
#[derive(Debug, Clone)]
pub struct Emulator {
    workers: usize,
}

impl Default for Emulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Emulator {
    /// An emulator that runs blocks on as many CPU threads as there are cores.
    pub fn new() -> Self {
        Emulator { workers: std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }

    /// An emulator that runs blocks on `workers` CPU threads (1 runs blocks in
    /// order, which makes runs reproducible for kernels with global atomics).
    pub fn with_workers(workers: usize) -> Self {
        Emulator { workers: workers.max(1) }
    }

    /// Runs `plan` with `buffers[i]` bound to slot `i`, after the same checks
    /// as the CUDA executor: plan consistency, the PTX signature, and each
    /// buffer's access, length and alignment. The C++ signature of the
    /// emulated kernel is checked too.
    pub fn launch(&self, plan: &LaunchPlan, buffers: &mut [HostBind<'_>]) -> Result<()> {
        plan.check_before_launch(buffers.len())?;
        let err = |detail: String| Error::Emulator { kernel: plan.kernel.to_string(), detail };
        let mut addrs = Vec::with_capacity(buffers.len());
        for (slot, bind) in buffers.iter_mut().enumerate() {
            let writable = matches!(bind, HostBind::Write(_));
            let (ptr, len) = bind.range();
            plan.check_binding(slot, writable, ptr as u64, len as u64)?;
            addrs.push(ptr as u64);
        }

        let module = CString::new(plan.module).map_err(|_| err("module name contains NUL".into()))?;
        let kernel = CString::new(plan.kernel).map_err(|_| err("kernel name contains NUL".into()))?;
        // SAFETY: both arguments are valid NUL-terminated strings for the
        // duration of the call; the registry only compares them.
        let entry = unsafe { ffi::memwall_emu_find(module.as_ptr(), kernel.as_ptr()) };
        if entry.is_null() {
            return Err(Error::UnknownKernel { module: plan.module.to_string(), kernel: plan.kernel.to_string() });
        }
        // SAFETY: a non-null entry points into the registry's static table,
        // whose `param_sizes` has `param_count` elements.
        let sizes = unsafe { std::slice::from_raw_parts((*entry).param_sizes, (*entry).param_count as usize) };
        if sizes.len() != plan.args.len() || sizes.iter().zip(&plan.args).any(|(&s, a)| s as usize != a.size()) {
            return Err(err(format!(
                "C++ parameter sizes {sizes:?} differ from the plan's {:?}",
                plan.args.iter().map(KernelArg::size).collect::<Vec<_>>()
            )));
        }

        let mut values = plan.arg_values(&addrs);
        let args: Vec<*mut c_void> = values.iter_mut().map(ArgValue::as_mut_ptr).collect();
        let grid = [plan.grid.x, plan.grid.y, plan.grid.z];
        let block = [plan.block.x, plan.block.y, plan.block.z];
        let mut msg = vec![0 as c_char; 1024];
        let workers = u32::try_from(self.workers).unwrap_or(u32::MAX);
        // SAFETY: `entry` is a registry entry whose parameter sizes equal the
        // plan's (checked above), and `args` holds one pointer per parameter
        // to a value of that size, alive until the call returns. Every
        // pointer argument is the address of a bound buffer with the
        // declared access, length and alignment (checked above), which the
        // caller's borrows keep alive and unaliased for the call; the plan's
        // builder sized `min_bytes` from the kernel's access pattern. `grid`
        // and `block` have 3 elements; `msg` has `msg.len()` bytes.
        let rc = unsafe {
            ffi::memwall_emu_launch(
                entry,
                grid.as_ptr(),
                block.as_ptr(),
                plan.dynamic_smem_bytes as usize,
                args.as_ptr(),
                workers,
                msg.as_mut_ptr(),
                msg.len(),
            )
        };
        if rc != 0 {
            // SAFETY: the runtime wrote a NUL-terminated message into `msg`
            // (snprintf truncates to the buffer and terminates).
            let text = unsafe { CStr::from_ptr(msg.as_ptr()) }.to_string_lossy().into_owned();
            return Err(err(text));
        }
        Ok(())
    }
}
