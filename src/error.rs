//! The one error type of the `memwall` crate.

use cudarc::driver::DriverError;

/// Everything that can go wrong in memwall. Each variant carries the values
/// that were wrong, so a message alone says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// libcuda could not be loaded: this machine has no NVIDIA driver.
    #[error("no CUDA driver: libcuda could not be loaded (CPU paths still work)")]
    NoDriver,

    /// The driver is older than the one the embedded PTX needs.
    #[error(
        "CUDA driver supports CUDA {found_major}.{found_minor}, but memwall's PTX (ISA 9.0) needs \
         CUDA 13.0 (driver R580 or newer)"
    )]
    DriverTooOld {
        /// Major CUDA version the driver supports.
        found_major: i32,
        /// Minor CUDA version the driver supports.
        found_minor: i32,
    },

    /// A device ordinal beyond the devices present.
    #[error("CUDA device {ordinal} requested, but {count} device(s) present")]
    NoSuchDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many devices the driver reports.
        count: usize,
    },

    /// A CUDA driver call failed.
    #[error("CUDA driver call failed during {during}: {source}")]
    Driver {
        /// What memwall was doing.
        during: String,
        /// The driver's error.
        #[source]
        source: DriverError,
    },

    /// No embedded PTX module has this name.
    #[error("no embedded PTX module named {module:?} (modules: {known})")]
    UnknownModule {
        /// The module asked for.
        module: String,
        /// The modules that exist, comma separated.
        known: String,
    },

    /// The PTX module has no entry with this name.
    #[error("PTX module {module:?} has no kernel entry {kernel:?}")]
    UnknownKernel {
        /// The module searched.
        module: String,
        /// The kernel asked for.
        kernel: String,
    },

    /// A launch plan does not match its kernel's PTX signature.
    #[error("launch plan for {kernel}: {detail}")]
    SignatureMismatch {
        /// The kernel.
        kernel: String,
        /// Which argument differs and how.
        detail: String,
    },

    /// A launch configuration the hardware cannot run.
    #[error("launch plan for {kernel}: invalid launch configuration: {detail}")]
    InvalidLaunch {
        /// The kernel.
        kernel: String,
        /// What is wrong, with the values.
        detail: String,
    },

    /// The buffers bound to a plan do not match the buffers it declares.
    #[error("launch plan for {kernel}: buffer {slot} ({name}): {detail}")]
    BufferBinding {
        /// The kernel.
        kernel: String,
        /// The buffer slot.
        slot: usize,
        /// The buffer's name in the plan.
        name: &'static str,
        /// What is wrong, with the values.
        detail: String,
    },

    /// The CPU emulator found a fault in a kernel (or could not run it).
    #[error("emulator: {detail}")]
    Emulator {
        /// The kernel.
        kernel: String,
        /// What went wrong: kernel, block and thread, and the fault.
        detail: String,
    },

    /// An argument value a function cannot accept.
    #[error("invalid {what} = {value}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },

    /// A buffer shorter than the operation needs.
    #[error("{what} holds {got} bytes but {needed} are needed")]
    BufferTooSmall {
        /// Which buffer.
        what: &'static str,
        /// Bytes needed.
        needed: u128,
        /// Bytes present.
        got: usize,
    },
}

impl Error {
    /// Wraps a driver error with what memwall was doing.
    pub fn driver(during: impl Into<String>, source: DriverError) -> Self {
        Error::Driver { during: during.into(), source }
    }

    /// An [`Error::InvalidArgument`].
    pub fn invalid(what: &'static str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { what, value: value.to_string(), reason: reason.into() }
    }
}

/// `Result` with memwall's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
