//! The CUDA executor: runs a [`LaunchPlan`] on a stream with device buffers
//! bound to its slots, after checking every buffer against the plan.

use std::mem::size_of;

use cudarc::driver::{
    sys, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig,
    PushKernelArg, SyncOnDrop,
};

use crate::error::{Error, Result};
use crate::gpu::device::Gpu;
use crate::gpu::plan::{Access, KernelArg, LaunchPlan};

/// Dynamic shared memory a kernel may use without opting in.
const DEFAULT_SMEM_LIMIT: u32 = 48 * 1024;

/// Device memory a kernel may read: its address and length in bytes, and the
/// guard that orders the access on `stream` (drop it after the launch).
pub trait DeviceRead {
    /// Address and byte length, ordered after earlier writes on `stream`.
    fn read_range<'a>(&'a self, stream: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>);
}

/// Device memory a kernel may write.
pub trait DeviceWrite {
    /// Address and byte length, ordered after earlier reads and writes on `stream`.
    fn write_range<'a>(&'a mut self, stream: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>);
}

macro_rules! impl_device_read {
    ($($ty:ty),*) => {$(
        impl<T: DeviceRepr> DeviceRead for $ty {
            fn read_range<'a>(&'a self, stream: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>) {
                let (ptr, guard) = self.device_ptr(stream);
                (ptr, self.len() * size_of::<T>(), guard)
            }
        }
    )*};
}
impl_device_read!(CudaSlice<T>, CudaView<'_, T>, CudaViewMut<'_, T>);

macro_rules! impl_device_write {
    ($($ty:ty),*) => {$(
        impl<T: DeviceRepr> DeviceWrite for $ty {
            fn write_range<'a>(&'a mut self, stream: &'a CudaStream) -> (sys::CUdeviceptr, usize, SyncOnDrop<'a>) {
                let len = self.len() * size_of::<T>();
                let (ptr, guard) = self.device_ptr_mut(stream);
                (ptr, len, guard)
            }
        }
    )*};
}
impl_device_write!(CudaSlice<T>, CudaViewMut<'_, T>);

/// A buffer bound to one slot of a plan.
pub enum Bind<'b> {
    /// For a slot the kernel only reads.
    Read(&'b dyn DeviceRead),
    /// For a slot the kernel writes.
    Write(&'b mut dyn DeviceWrite),
}

/// The scalar values of a plan's arguments, each stored with its exact C type
/// so a pointer to it can be handed to cuLaunchKernel.
enum ArgValue {
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Blob([u64; 16]),
}

impl Gpu {
    /// Runs `plan` on `stream` with `buffers[i]` bound to slot `i`.
    ///
    /// Checks, before anything is enqueued: the plan's own consistency, its
    /// arguments against the kernel's PTX signature, the dynamic shared
    /// memory against this device, and that every bound buffer has the
    /// declared access, length and alignment. With those checks the kernel
    /// touches only memory inside the bound buffers, provided the plan's
    /// builder computed `min_bytes` from the kernel's access pattern, which
    /// is what every plan builder in memwall does and tests.
    pub fn launch(&self, plan: &LaunchPlan, stream: &CudaStream, buffers: &mut [Bind<'_>]) -> Result<()> {
        plan.validate()?;
        plan.check_signature()?;
        if plan.dynamic_smem_bytes > self.props().max_smem_per_block_optin {
            return Err(Error::InvalidLaunch {
                kernel: plan.kernel.to_string(),
                detail: format!(
                    "{} bytes of dynamic shared memory; device {} allows {}",
                    plan.dynamic_smem_bytes,
                    self.props().ordinal,
                    self.props().max_smem_per_block_optin
                ),
            });
        }
        if buffers.len() != plan.buffers.len() {
            return Err(Error::InvalidLaunch {
                kernel: plan.kernel.to_string(),
                detail: format!("{} buffers bound, the plan declares {}", buffers.len(), plan.buffers.len()),
            });
        }
        let func = self.function(plan.module, plan.kernel)?;
        if plan.dynamic_smem_bytes > DEFAULT_SMEM_LIMIT {
            // Above 48 KiB a kernel must opt in to its dynamic shared memory.
            func.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                plan.dynamic_smem_bytes as i32,
            )
            .map_err(|e| {
                Error::driver(
                    format!("opting {} into {} bytes of shared memory", plan.kernel, plan.dynamic_smem_bytes),
                    e,
                )
            })?;
        }

        let mut addrs = Vec::with_capacity(buffers.len());
        let mut guards = Vec::with_capacity(buffers.len());
        for (slot, (bind, want)) in buffers.iter_mut().zip(&plan.buffers).enumerate() {
            let bad = |detail: String| Error::BufferBinding {
                kernel: plan.kernel.to_string(),
                slot,
                name: want.name,
                detail,
            };
            let (ptr, len, guard) = match (bind, want.access) {
                (Bind::Read(b), Access::Read) => b.read_range(stream),
                (Bind::Write(b), _) => b.write_range(stream),
                (Bind::Read(_), Access::Write) => {
                    return Err(bad("the kernel writes it, but it was bound read-only".into()))
                }
            };
            if (len as u64) < want.min_bytes {
                return Err(bad(format!("{len} bytes bound, the plan needs {}", want.min_bytes)));
            }
            if ptr % want.align != 0 {
                return Err(bad(format!("address {ptr:#x} is not {}-byte aligned", want.align)));
            }
            addrs.push(ptr);
            guards.push(guard);
        }

        let values: Vec<ArgValue> = plan
            .args
            .iter()
            .map(|a| match *a {
                KernelArg::Buffer { slot, offset } => ArgValue::U64(addrs[slot] + offset),
                KernelArg::U32(v) => ArgValue::U32(v),
                KernelArg::I32(v) => ArgValue::I32(v),
                KernelArg::U64(v) => ArgValue::U64(v),
                KernelArg::I64(v) => ArgValue::I64(v),
                KernelArg::F32(v) => ArgValue::F32(v),
                KernelArg::F64(v) => ArgValue::F64(v),
                KernelArg::Blob(b) => ArgValue::Blob(*b.words()),
            })
            .collect();
        let mut builder = stream.launch_builder(&func);
        for v in &values {
            match v {
                ArgValue::U32(v) => builder.arg(v),
                ArgValue::I32(v) => builder.arg(v),
                ArgValue::U64(v) => builder.arg(v),
                ArgValue::I64(v) => builder.arg(v),
                ArgValue::F32(v) => builder.arg(v),
                ArgValue::F64(v) => builder.arg(v),
                // The kernel reads the blob's first `len` bytes (its
                // signature's size, checked above) from this storage.
                ArgValue::Blob(v) => builder.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: plan.grid.tuple(),
            block_dim: plan.block.tuple(),
            shared_mem_bytes: plan.dynamic_smem_bytes,
        };
        // SAFETY: the argument list matches the PTX signature in count, size
        // and kind (checked above); every pointer argument is the address of
        // a bound buffer that is live for this call, has the declared access,
        // length and alignment (checked above), and its guard orders the
        // kernel after earlier work on it and is dropped only after the
        // launch is enqueued. `values` outlives the launch call.
        unsafe { builder.launch(cfg) }.map_err(|e| Error::driver(format!("launching {}", plan.kernel), e))?;
        drop(guards);
        Ok(())
    }
}
