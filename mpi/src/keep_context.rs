//! The caller's current CUDA context, put back when the interposer is done.
//!
//! The device path binds the context of the device that owns a buffer (a
//! device's primary context). Left bound, the application's next CUDA call
//! on that thread would go to that device, not the one it had made current:
//! a multi-GPU rank would silently change devices across an `MPI_Send`.

use memwall::gpu::cuda::sys;

use crate::device::cuda_usable;

/// Restores the thread's current context (possibly none) when dropped.
pub(crate) struct KeepContext(Option<sys::CUcontext>);

impl KeepContext {
    /// Remembers the thread's current context; inert without a usable
    /// driver.
    pub(crate) fn save() -> Self {
        if !cuda_usable() {
            return KeepContext(None);
        }
        let mut ctx: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: the driver is initialised (cuda_usable) and `ctx` is a
        // valid out pointer for one CUcontext.
        let rc = unsafe { sys::cuCtxGetCurrent(&mut ctx) };
        KeepContext((rc == sys::CUresult::CUDA_SUCCESS).then_some(ctx))
    }
}

impl Drop for KeepContext {
    fn drop(&mut self) {
        if let Some(ctx) = self.0 {
            // SAFETY: `ctx` was current on this thread when saved (or null,
            // which unbinds); contexts the application made stay alive
            // while it uses them, and primary contexts live as long as the
            // interposer's devices.
            unsafe { sys::cuCtxSetCurrent(ctx) };
        }
    }
}
