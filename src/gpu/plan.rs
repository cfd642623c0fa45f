//! Launch plans: a kernel call described as plain data, built without CUDA.
//!
//! Every kernel wrapper first builds a [`LaunchPlan`] (which entry, grid,
//! block, dynamic shared memory, typed arguments, and the buffers it touches
//! with the bytes and alignment it needs). Executors then run the plan: the
//! CUDA executor ([`crate::gpu::Gpu::launch`]) and the CPU emulator. Because a
//! plan is data, tests check it against the compiled PTX signature and
//! executors check the bound buffers against it before anything runs.

use std::fmt;

use crate::error::{Error, Result};
use crate::gpu::ptx;

/// Grid or block dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dim3 {
    /// x extent.
    pub x: u32,
    /// y extent.
    pub y: u32,
    /// z extent.
    pub z: u32,
}

impl Dim3 {
    /// A 1-D extent.
    pub const fn x(x: u32) -> Self {
        Dim3 { x, y: 1, z: 1 }
    }

    /// The product of the three extents.
    pub fn count(self) -> u64 {
        u64::from(self.x) * u64::from(self.y) * u64::from(self.z)
    }

    /// As the tuple cudarc takes.
    pub fn tuple(self) -> (u32, u32, u32) {
        (self.x, self.y, self.z)
    }
}

impl fmt::Display for Dim3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}, {})", self.x, self.y, self.z)
    }
}

/// How a kernel uses a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only reads it.
    Read,
    /// Writes it (and may read it).
    Write,
}

/// A buffer a plan touches. Executors bind one real buffer per slot and refuse
/// one that is shorter or less aligned than declared here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferUse {
    /// A name for messages (`"src"`, `"dst"`...).
    pub name: &'static str,
    /// Read or write.
    pub access: Access,
    /// The bound buffer must hold at least this many bytes.
    pub min_bytes: u64,
    /// The bound buffer's address must be a multiple of this (a power of two).
    pub align: u64,
}

/// One kernel argument, typed as the kernel's C signature takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KernelArg {
    /// The address of the buffer bound to `slot`, plus `offset` bytes.
    Buffer {
        /// Index into [`LaunchPlan::buffers`].
        slot: usize,
        /// Byte offset added to the buffer's address.
        offset: u64,
    },
    /// `uint32_t` / `unsigned`.
    U32(u32),
    /// `int32_t` / `int`.
    I32(i32),
    /// `uint64_t`.
    U64(u64),
    /// `int64_t`.
    I64(i64),
    /// `float`.
    F32(f32),
    /// `double`.
    F64(f64),
    /// A struct passed by value (`.param .align 8 .b8 name[len]`), up to 128 bytes.
    Blob(Blob),
}

/// The bytes of a by-value struct argument, 8-byte aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob {
    words: [u64; 16],
    len: u8,
}

impl Blob {
    /// The most bytes a blob holds.
    pub const MAX_BYTES: usize = 128;

    /// A blob holding `words` (at most 16), as the struct's 8-byte fields.
    pub fn from_words(words: &[u64]) -> Option<Self> {
        if words.len() > 16 {
            return None;
        }
        let mut w = [0u64; 16];
        w[..words.len()].copy_from_slice(words);
        Some(Blob { words: w, len: (words.len() * 8) as u8 })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The storage, at least `len()` bytes, 8-byte aligned.
    pub fn words(&self) -> &[u64; 16] {
        &self.words
    }
}

impl KernelArg {
    /// Size in bytes of the argument as passed to the kernel.
    pub fn size(&self) -> usize {
        match self {
            KernelArg::U32(_) | KernelArg::I32(_) | KernelArg::F32(_) => 4,
            KernelArg::Buffer { .. } | KernelArg::U64(_) | KernelArg::I64(_) | KernelArg::F64(_) => 8,
            KernelArg::Blob(b) => b.len(),
        }
    }

    /// Whether the argument is floating point.
    pub fn is_float(&self) -> bool {
        matches!(self, KernelArg::F32(_) | KernelArg::F64(_))
    }
}

/// An argument's value in its C type, with buffer slots resolved to
/// addresses: what an executor hands the kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArgValue {
    /// `uint32_t`.
    U32(u32),
    /// `int32_t`.
    I32(i32),
    /// `uint64_t`, and buffer addresses.
    U64(u64),
    /// `int64_t`.
    I64(i64),
    /// `float`.
    F32(f32),
    /// `double`.
    F64(f64),
    /// A by-value struct (the kernel reads its first bytes).
    Blob([u64; 16]),
}

impl ArgValue {
    /// A pointer to the value, as kernel launch APIs take arguments.
    pub fn as_mut_ptr(&mut self) -> *mut std::ffi::c_void {
        match self {
            ArgValue::U32(v) => (v as *mut u32).cast(),
            ArgValue::I32(v) => (v as *mut i32).cast(),
            ArgValue::U64(v) => (v as *mut u64).cast(),
            ArgValue::I64(v) => (v as *mut i64).cast(),
            ArgValue::F32(v) => (v as *mut f32).cast(),
            ArgValue::F64(v) => (v as *mut f64).cast(),
            ArgValue::Blob(v) => v.as_mut_ptr().cast(),
        }
    }
}

/// The most threads a block may have on any supported GPU.
pub const MAX_THREADS_PER_BLOCK: u64 = 1024;
/// The most dynamic shared memory a block may opt into on any supported GPU
/// (227 KiB on sm_90; the device check in the executor is exact).
pub const MAX_DYNAMIC_SMEM_BYTES: u32 = 227 * 1024;

/// A kernel call as plain data. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    /// The PTX module (the `kernels/*.cu` stem).
    pub module: &'static str,
    /// The entry name in that module.
    pub kernel: &'static str,
    /// Grid dimensions in blocks.
    pub grid: Dim3,
    /// Block dimensions in threads.
    pub block: Dim3,
    /// Dynamic shared memory per block in bytes.
    pub dynamic_smem_bytes: u32,
    /// The arguments, in the kernel's parameter order.
    pub args: Vec<KernelArg>,
    /// The buffers the arguments refer to.
    pub buffers: Vec<BufferUse>,
}

impl LaunchPlan {
    /// Checks what can be checked without a device: dimensions within the
    /// limits of every supported GPU, buffer slots that exist and are used,
    /// power-of-two alignments, offsets inside their buffers.
    pub fn validate(&self) -> Result<()> {
        let bad = |detail: String| Error::InvalidLaunch { kernel: self.kernel.to_string(), detail };
        let (g, b) = (self.grid, self.block);
        if g.count() == 0 || g.x > i32::MAX as u32 || g.y > 65535 || g.z > 65535 {
            return Err(bad(format!("grid {g} outside 1..=(2^31-1, 65535, 65535)")));
        }
        if b.count() == 0 || b.count() > MAX_THREADS_PER_BLOCK || b.z > 64 {
            return Err(bad(format!("block {b} has {} threads; 1..=1024 allowed, z <= 64", b.count())));
        }
        if self.dynamic_smem_bytes > MAX_DYNAMIC_SMEM_BYTES {
            return Err(bad(format!(
                "{} bytes of dynamic shared memory; at most {MAX_DYNAMIC_SMEM_BYTES}",
                self.dynamic_smem_bytes
            )));
        }
        let mut used = vec![false; self.buffers.len()];
        for (i, arg) in self.args.iter().enumerate() {
            if let KernelArg::Buffer { slot, offset } = *arg {
                let buf = self.buffers.get(slot).ok_or_else(|| {
                    bad(format!("argument {i} names buffer slot {slot}, but only {} exist", self.buffers.len()))
                })?;
                if offset > buf.min_bytes {
                    return Err(bad(format!(
                        "argument {i}: offset {offset} past the {} bytes declared for {}",
                        buf.min_bytes, buf.name
                    )));
                }
                used[slot] = true;
            }
        }
        for (slot, buf) in self.buffers.iter().enumerate() {
            if !buf.align.is_power_of_two() {
                return Err(bad(format!("buffer {slot} ({}) alignment {} is not a power of two", buf.name, buf.align)));
            }
            if !used[slot] {
                return Err(bad(format!("buffer {slot} ({}) is declared but no argument uses it", buf.name)));
            }
        }
        Ok(())
    }

    /// Checks the argument list against the compiled kernel's `.entry`
    /// signature: the same count, and each argument the same size and the
    /// same kind (integer or pointer versus floating point).
    pub fn check_signature(&self) -> Result<()> {
        let sig = ptx::entry_signature(self.module, self.kernel)?;
        let mismatch = |detail: String| Error::SignatureMismatch { kernel: self.kernel.to_string(), detail };
        if sig.params.len() != self.args.len() {
            return Err(mismatch(format!(
                "{} arguments planned, the PTX entry takes {}",
                self.args.len(),
                sig.params.len()
            )));
        }
        for (i, (arg, param)) in self.args.iter().zip(&sig.params).enumerate() {
            if arg.size() != param.size || arg.is_float() != param.is_float() {
                return Err(mismatch(format!(
                    "argument {i} planned as {arg:?} ({} bytes), the PTX parameter is .{} ({} bytes)",
                    arg.size(),
                    param.ty,
                    param.size
                )));
            }
        }
        Ok(())
    }

    /// What every executor checks before binding: the plan's consistency,
    /// its signature, and that `bound` buffers match the declared slots.
    pub fn check_before_launch(&self, bound: usize) -> Result<()> {
        self.validate()?;
        self.check_signature()?;
        if bound != self.buffers.len() {
            return Err(Error::InvalidLaunch {
                kernel: self.kernel.to_string(),
                detail: format!("{bound} buffers bound, the plan declares {}", self.buffers.len()),
            });
        }
        Ok(())
    }

    /// Checks the buffer bound to `slot`: write access where the kernel
    /// writes, at least the declared bytes, the declared alignment.
    pub fn check_binding(&self, slot: usize, writable: bool, addr: u64, len: u64) -> Result<()> {
        let want = &self.buffers[slot];
        let bad =
            |detail: String| Error::BufferBinding { kernel: self.kernel.to_string(), slot, name: want.name, detail };
        if want.access == Access::Write && !writable {
            return Err(bad("the kernel writes it, but it was bound read-only".into()));
        }
        if len < want.min_bytes {
            return Err(bad(format!("{len} bytes bound, the plan needs {}", want.min_bytes)));
        }
        if addr % want.align != 0 {
            return Err(bad(format!("address {addr:#x} is not {}-byte aligned", want.align)));
        }
        Ok(())
    }

    /// The argument values, with buffer slot `i` at address `addrs[i]`.
    pub fn arg_values(&self, addrs: &[u64]) -> Vec<ArgValue> {
        self.args
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
            .collect()
    }

    /// Total threads launched.
    pub fn threads(&self) -> u64 {
        self.grid.count() * self.block.count()
    }
}
