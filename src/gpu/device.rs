//! The CUDA device: driver discovery that never panics, device properties,
//! lazily loaded modules, streams and events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{sys, CudaContext, CudaEvent, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;

use crate::error::{Error, Result};
use crate::gpu::ptx;

/// The oldest CUDA version (as the driver reports it, 1000·major + 10·minor)
/// whose driver JIT-compiles PTX ISA 9.0: CUDA 13.0, driver R580.
pub const MIN_DRIVER_CUDA_VERSION: i32 = 13000;

/// Whether libcuda can be loaded on this machine. Cheap after the first call.
pub fn driver_present() -> bool {
    // SAFETY: `is_culib_present` only tries to dlopen the candidate library
    // names and drops what it opened; it calls no CUDA function.
    unsafe { sys::is_culib_present() }
}

/// The CUDA version the installed driver supports, as (major, minor).
pub fn driver_version() -> Result<(i32, i32)> {
    if !driver_present() {
        return Err(Error::NoDriver);
    }
    let mut v = 0i32;
    // SAFETY: libcuda is present (checked above), so cudarc's loader resolves
    // cuDriverGetVersion, which exists in every driver; `v` is a valid out
    // pointer for the duration of the call.
    unsafe { sys::cuDriverGetVersion(&mut v) }.result().map_err(|e| Error::driver("cuDriverGetVersion", e))?;
    Ok((v / 1000, (v % 1000) / 10))
}

/// How many CUDA devices the driver sees (`Err(NoDriver)` without a driver).
pub fn device_count() -> Result<usize> {
    check_driver()?;
    cudarc::driver::result::init().map_err(|e| Error::driver("cuInit", e))?;
    let n = cudarc::driver::result::device::get_count().map_err(|e| Error::driver("cuDeviceGetCount", e))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// A driver is present and new enough for the embedded PTX.
fn check_driver() -> Result<()> {
    let (major, minor) = driver_version()?;
    if major * 1000 + minor * 10 < MIN_DRIVER_CUDA_VERSION {
        return Err(Error::DriverTooOld { found_major: major, found_minor: minor });
    }
    Ok(())
}

/// What memwall needs to know about a device to plan kernels and copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProps {
    /// The device ordinal.
    pub ordinal: usize,
    /// The marketing name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Device memory in bytes.
    pub total_mem_bytes: usize,
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Most dynamic shared memory a block can opt into, in bytes.
    pub max_smem_per_block_optin: u32,
    /// L2 cache in bytes.
    pub l2_cache_bytes: u32,
    /// Memory bus width in bits.
    pub memory_bus_width_bits: u32,
    /// Peak memory clock in kHz (0 where the driver no longer reports it).
    pub memory_clock_khz: u32,
    /// Whether host memory can be mapped into the device address space.
    pub can_map_host_memory: bool,
}

impl DeviceProps {
    fn query(ctx: &CudaContext) -> Result<Self> {
        let attr = |a: Attr| -> Result<u32> {
            let v = ctx.attribute(a).map_err(|e| Error::driver(format!("cuDeviceGetAttribute({a:?})"), e))?;
            Ok(u32::try_from(v).unwrap_or(0))
        };
        Ok(DeviceProps {
            ordinal: ctx.ordinal(),
            name: ctx.name().map_err(|e| Error::driver("cuDeviceGetName", e))?,
            compute_capability: ctx.compute_capability().map_err(|e| Error::driver("compute capability query", e))?,
            total_mem_bytes: ctx.total_mem().map_err(|e| Error::driver("cuDeviceTotalMem", e))?,
            sm_count: attr(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            max_smem_per_block_optin: attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?,
            l2_cache_bytes: attr(Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?,
            memory_bus_width_bits: attr(Attr::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)?,
            memory_clock_khz: attr(Attr::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE).unwrap_or(0),
            can_map_host_memory: attr(Attr::CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY)? != 0,
        })
    }

    /// Theoretical peak DRAM bandwidth in GB/s from bus width and clock
    /// (double data rate), or `None` where the clock is not reported.
    pub fn peak_dram_gbps(&self) -> Option<f64> {
        (self.memory_clock_khz > 0)
            .then(|| 2.0 * f64::from(self.memory_clock_khz) * 1e3 * f64::from(self.memory_bus_width_bits) / 8.0 / 1e9)
    }
}

/// One CUDA device with memwall's kernels available on it.
///
/// Modules are loaded from the embedded PTX the first time one of their
/// kernels is launched, and functions are cached.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    props: DeviceProps,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<(&'static str, &'static str), CudaFunction>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("props", &self.props).finish_non_exhaustive()
    }
}

impl Gpu {
    /// Opens device `ordinal`. Returns [`Error::NoDriver`] on a machine without
    /// libcuda, [`Error::DriverTooOld`] below CUDA 13.0 and
    /// [`Error::NoSuchDevice`] past the last device; never panics.
    pub fn new(ordinal: usize) -> Result<Self> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(Error::NoSuchDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| Error::driver(format!("creating a context on device {ordinal}"), e))?;
        let props = DeviceProps::query(&ctx)?;
        Ok(Gpu { ctx, props, modules: Mutex::new(HashMap::new()), functions: Mutex::new(HashMap::new()) })
    }

    /// The device's properties.
    pub fn props(&self) -> &DeviceProps {
        &self.props
    }

    /// The cudarc context, for interoperating with other cudarc users.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The context's default stream.
    pub fn default_stream(&self) -> Arc<CudaStream> {
        self.ctx.default_stream()
    }

    /// A new non-blocking stream.
    pub fn new_stream(&self) -> Result<Arc<CudaStream>> {
        self.ctx.new_stream().map_err(|e| Error::driver("cuStreamCreate", e))
    }

    /// A new event; `timing` enables [`CudaEvent::elapsed_ms`].
    pub fn new_event(&self, timing: bool) -> Result<CudaEvent> {
        let flags =
            if timing { sys::CUevent_flags::CU_EVENT_DEFAULT } else { sys::CUevent_flags::CU_EVENT_DISABLE_TIMING };
        self.ctx.new_event(Some(flags)).map_err(|e| Error::driver("cuEventCreate", e))
    }

    /// The function `kernel` of embedded module `module`, loading the module
    /// on first use.
    pub fn function(&self, module: &'static str, kernel: &'static str) -> Result<CudaFunction> {
        let mut functions = self.functions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = functions.get(&(module, kernel)) {
            return Ok(f.clone());
        }
        let m = self.module(module)?;
        let f = m.load_function(kernel).map_err(|e| match e.0 {
            sys::CUresult::CUDA_ERROR_NOT_FOUND => {
                Error::UnknownKernel { module: module.to_string(), kernel: kernel.to_string() }
            }
            _ => Error::driver(format!("cuModuleGetFunction({module}, {kernel})"), e),
        })?;
        functions.insert((module, kernel), f.clone());
        Ok(f)
    }

    fn module(&self, name: &'static str) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = modules.get(name) {
            return Ok(m.clone());
        }
        let src = ptx::module(name)?;
        let m = self.ctx.load_module(Ptx::from_src(src.ptx)).map_err(|e| {
            Error::driver(format!("loading PTX module {name} (JIT for {:?})", self.props.compute_capability), e)
        })?;
        modules.insert(name, m.clone());
        Ok(m)
    }
}
