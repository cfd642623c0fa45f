//! The CUDA layer: devices, embedded PTX, launch plans and the CUDA executor.
//!
//! Nothing here needs CUDA to build. Without a driver, [`Gpu::new`] returns
//! [`crate::Error::NoDriver`]; launch plans are built and checked on any
//! machine and run on the CPU emulator where there is no GPU.

mod device;
mod launch;
mod pinned;
mod plan;
pub mod ptx;
mod require;

#[cfg(test)]
mod test;

pub use device::{device_count, driver_present, driver_version, DeviceProps, Gpu, MIN_DRIVER_CUDA_VERSION};
pub use launch::{Bind, DeviceRead, DeviceWrite};
pub use pinned::{MappedView, PinnedBuffer, PinnedKind};
pub use plan::{
    Access, ArgValue, Blob, BufferUse, Dim3, KernelArg, LaunchPlan, MAX_DYNAMIC_SMEM_BYTES, MAX_THREADS_PER_BLOCK,
};
pub use require::{gpu_or_skip, gpu_required, report_skip, REQUIRE_GPU_ENV};

/// Re-export of the cudarc driver API memwall's signatures use, so users need
/// not pin the same cudarc version themselves.
pub use cudarc::driver as cuda;
