//! What `memwall info` reports: the build and the CUDA devices of this machine.

use std::fmt;

use crate::gpu::{self, ptx, DeviceProps, Gpu};

/// The CUDA side of [`SystemInfo`].
#[derive(Debug, Clone)]
pub enum CudaInfo {
    /// No libcuda on this machine.
    NoDriver,
    /// A driver, and the devices it opened (or why each could not be opened).
    Driver {
        /// CUDA version the driver supports, (major, minor).
        version: (i32, i32),
        /// One entry per device.
        devices: Vec<Result<DeviceProps, String>>,
    },
    /// A driver that could not be queried.
    Error(String),
}

/// Everything `memwall info` prints.
#[derive(Debug, Clone)]
pub struct SystemInfo {
    /// memwall's version.
    pub version: &'static str,
    /// The PTX virtual architecture.
    pub ptx_target: &'static str,
    /// The PTX ISA version of the embedded modules.
    pub ptx_isa: &'static str,
    /// Where the embedded PTX came from.
    pub ptx_origin: &'static str,
    /// The embedded module names.
    pub modules: Vec<&'static str>,
    /// The driver and devices.
    pub cuda: CudaInfo,
}

impl SystemInfo {
    /// Queries this machine. Never fails: problems become part of the report.
    pub fn collect() -> Self {
        let cuda = match gpu::driver_version() {
            Err(crate::Error::NoDriver) => CudaInfo::NoDriver,
            Err(e) => CudaInfo::Error(e.to_string()),
            Ok(version) => match gpu::device_count() {
                Err(e) => CudaInfo::Error(e.to_string()),
                Ok(n) => CudaInfo::Driver {
                    version,
                    devices: (0..n)
                        .map(|i| Gpu::new(i).map(|g| g.props().clone()).map_err(|e| e.to_string()))
                        .collect(),
                },
            },
        };
        SystemInfo {
            version: env!("CARGO_PKG_VERSION"),
            ptx_target: ptx::PTX_TARGET,
            ptx_isa: ptx::ptx_isa_version().unwrap_or("unknown"),
            ptx_origin: ptx::PTX_ORIGIN,
            modules: ptx::MODULES.iter().map(|m| m.name).collect(),
            cuda,
        }
    }
}

impl fmt::Display for SystemInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "memwall {}", self.version)?;
        writeln!(
            f,
            "PTX: {} (ISA {}), {}; needs a CUDA 13.0 driver (R580+)",
            self.ptx_target, self.ptx_isa, self.ptx_origin
        )?;
        writeln!(f, "kernel modules: {}", self.modules.join(", "))?;
        match &self.cuda {
            CudaInfo::NoDriver => writeln!(f, "no CUDA driver: CPU only"),
            CudaInfo::Error(e) => writeln!(f, "CUDA driver present but unusable: {e}; CPU only"),
            CudaInfo::Driver { version, devices } => {
                writeln!(f, "CUDA driver: supports CUDA {}.{}, {} device(s)", version.0, version.1, devices.len())?;
                for (i, d) in devices.iter().enumerate() {
                    match d {
                        Err(e) => writeln!(f, "  [{i}] cannot open: {e}")?,
                        Ok(p) => {
                            let bw = p.peak_dram_gbps().map(|g| format!(", peak DRAM {g:.0} GB/s")).unwrap_or_default();
                            writeln!(
                                f,
                                "  [{i}] {} sm_{}{}, {:.1} GiB, {} SMs, {} KiB smem/block, {} MiB L2{bw}",
                                p.name,
                                p.compute_capability.0,
                                p.compute_capability.1,
                                p.total_mem_bytes as f64 / (1u64 << 30) as f64,
                                p.sm_count,
                                p.max_smem_per_block_optin / 1024,
                                p.l2_cache_bytes >> 20,
                            )?
                        }
                    }
                }
                Ok(())
            }
        }
    }
}
