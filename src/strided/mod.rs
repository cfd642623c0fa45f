//! Strided copy: the 2-D building block of datatype pack and unpack.
//!
//! A [`StridedCopy`] moves `rows` rows of `row_bytes` bytes; row `r` is read
//! at `src_offset + r * src_stride` and written at `dst_offset + r * dst_stride`
//! (strides in bytes, possibly negative). With a dense destination it is the
//! pack of an MPI vector type; with a dense source, the unpack.
//!
//! Three ways to run one: [`StridedCopy::run_cpu`] on host slices,
//! [`StridedCopy::plan`] for any executor, and [`StridedCopy::run_gpu`] on
//! device buffers. All three validate the same way first.

use cudarc::driver::CudaStream;

use crate::error::{Error, Result};
use crate::gpu::{Access, Bind, BufferUse, DeviceRead, DeviceWrite, Dim3, Gpu, KernelArg, LaunchPlan};

#[cfg(test)]
mod test;

/// A 2-D strided copy between two byte buffers. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StridedCopy {
    /// Number of rows.
    pub rows: u64,
    /// Bytes in each row.
    pub row_bytes: u64,
    /// Byte offset of row 0 in the source.
    pub src_offset: u64,
    /// Bytes from one source row to the next.
    pub src_stride: i64,
    /// Byte offset of row 0 in the destination.
    pub dst_offset: u64,
    /// Bytes from one destination row to the next.
    pub dst_stride: i64,
}

/// Threads per block of the copy kernels: 8 warps keep enough loads in
/// flight per SM without limiting occupancy (16-24 registers per thread).
const BLOCK_THREADS: u32 = 256;
/// Cap on blocks; the kernels loop grid-stride over the rest. 4096 blocks
/// of 256 threads fill every SM of an H100 (132 SMs x 2048 threads) 3.9x.
const MAX_BLOCKS: u64 = 4096;

/// The byte range `[lo, hi)` that `rows` rows of `row_bytes` touch from
/// `offset` with `stride`; an error names `what` when it leaves `0..`.
fn span(what: &'static str, offset: u64, stride: i64, rows: u64, row_bytes: u64) -> Result<(u64, u64)> {
    if rows == 0 || row_bytes == 0 {
        return Ok((offset, offset));
    }
    let last = i128::from(offset) + i128::from(stride) * i128::from(rows - 1);
    let lo = i128::from(offset).min(last);
    let hi = i128::from(offset).max(last) + i128::from(row_bytes);
    if lo < 0 {
        return Err(Error::invalid(
            what,
            format!("offset {offset}, stride {stride}, {rows} rows"),
            format!("row {} would start {} bytes before the buffer", rows - 1, -lo),
        ));
    }
    let hi = u64::try_from(hi)
        .map_err(|_| Error::invalid(what, format!("stride {stride} x {rows} rows"), "byte range overflows u64"))?;
    Ok((lo as u64, hi))
}

impl StridedCopy {
    /// Pack: gather `rows` rows `src_stride` bytes apart into a dense buffer.
    pub fn pack(rows: u64, row_bytes: u64, src_stride: i64) -> Self {
        let dense = i64::try_from(row_bytes).unwrap_or(i64::MAX);
        StridedCopy { rows, row_bytes, src_offset: 0, src_stride, dst_offset: 0, dst_stride: dense }
    }

    /// Unpack: scatter a dense buffer into `rows` rows `dst_stride` bytes apart.
    pub fn unpack(rows: u64, row_bytes: u64, dst_stride: i64) -> Self {
        let dense = i64::try_from(row_bytes).unwrap_or(i64::MAX);
        StridedCopy { rows, row_bytes, src_offset: 0, src_stride: dense, dst_offset: 0, dst_stride }
    }

    /// Bytes moved: `rows * row_bytes`.
    pub fn total_bytes(&self) -> Result<u64> {
        self.rows.checked_mul(self.row_bytes).ok_or_else(|| {
            Error::invalid("rows x row_bytes", format!("{} x {}", self.rows, self.row_bytes), "overflows u64")
        })
    }

    /// The smallest source and destination lengths, in bytes, that hold
    /// every byte the copy touches. Errors for negative reaches, overflow and
    /// destination rows that overlap (their result would depend on order).
    pub fn required_lengths(&self) -> Result<(u64, u64)> {
        self.total_bytes()?;
        let (_, src_hi) = span("source layout", self.src_offset, self.src_stride, self.rows, self.row_bytes)?;
        let (_, dst_hi) = span("destination layout", self.dst_offset, self.dst_stride, self.rows, self.row_bytes)?;
        if self.rows > 1
            && self.row_bytes > 0
            && u128::from(self.dst_stride.unsigned_abs()) < u128::from(self.row_bytes)
        {
            return Err(Error::invalid(
                "dst_stride",
                self.dst_stride,
                format!("destination rows of {} bytes would overlap", self.row_bytes),
            ));
        }
        Ok((src_hi, dst_hi))
    }

    fn check_lengths(&self, src_len: usize, dst_len: usize) -> Result<()> {
        let (src_need, dst_need) = self.required_lengths()?;
        if (src_len as u64) < src_need {
            return Err(Error::BufferTooSmall { what: "source", needed: src_need.into(), got: src_len });
        }
        if (dst_len as u64) < dst_need {
            return Err(Error::BufferTooSmall { what: "destination", needed: dst_need.into(), got: dst_len });
        }
        Ok(())
    }

    /// Runs the copy on the CPU.
    pub fn run_cpu(&self, src: &[u8], dst: &mut [u8]) -> Result<()> {
        self.check_lengths(src.len(), dst.len())?;
        if self.rows == 0 || self.row_bytes == 0 {
            return Ok(());
        }
        let n = self.row_bytes as usize; // fits: checked against the slice lengths
        let (mut s, mut d) = (self.src_offset as i128, self.dst_offset as i128);
        for _ in 0..self.rows {
            // In bounds: check_lengths proved every row lies inside both slices.
            dst[d as usize..d as usize + n].copy_from_slice(&src[s as usize..s as usize + n]);
            s += i128::from(self.src_stride);
            d += i128::from(self.dst_stride);
        }
        Ok(())
    }

    /// The widest word (1, 2, 4, 8 or 16 bytes) that divides the row length,
    /// the strides and offsets that matter, and `base_align`.
    fn word_bytes(&self, base_align: u64) -> u64 {
        let mut g = self.row_bytes | self.src_offset | self.dst_offset | base_align.max(1) | 16;
        if self.rows > 1 {
            g |= self.src_stride.unsigned_abs() | self.dst_stride.unsigned_abs();
        }
        1 << g.trailing_zeros().min(4)
    }

    /// The launch plan for the copy kernels, for source and destination
    /// buffers whose addresses are multiples of `base_align` bytes.
    pub fn plan(&self, base_align: u64) -> Result<LaunchPlan> {
        if !base_align.is_power_of_two() {
            return Err(Error::invalid("base_align", base_align, "must be a power of two"));
        }
        let (src_need, dst_need) = self.required_lengths()?;
        let word = self.word_bytes(base_align);
        let kernel = match word {
            1 => "memwall_strided_copy_w1",
            2 => "memwall_strided_copy_w2",
            4 => "memwall_strided_copy_w4",
            8 => "memwall_strided_copy_w8",
            _ => "memwall_strided_copy_w16",
        };
        let row_words = self.row_bytes / word;
        let total_words = self.rows * row_words; // <= total_bytes, checked above
        let blocks = total_words.div_ceil(u64::from(BLOCK_THREADS)).clamp(1, MAX_BLOCKS) as u32;
        Ok(LaunchPlan {
            module: "strided_copy",
            kernel,
            grid: Dim3::x(blocks),
            block: Dim3::x(BLOCK_THREADS),
            dynamic_smem_bytes: 0,
            args: vec![
                KernelArg::Buffer { slot: 0, offset: self.src_offset },
                KernelArg::Buffer { slot: 1, offset: self.dst_offset },
                KernelArg::U64(self.rows),
                KernelArg::U64(row_words),
                KernelArg::I64(self.src_stride),
                KernelArg::I64(self.dst_stride),
            ],
            buffers: vec![
                BufferUse { name: "src", access: Access::Read, min_bytes: src_need, align: word.min(base_align) },
                BufferUse { name: "dst", access: Access::Write, min_bytes: dst_need, align: word.min(base_align) },
            ],
        })
    }

    /// Runs the copy on the GPU, ordered on `stream`.
    pub fn run_gpu(
        &self,
        gpu: &Gpu,
        stream: &CudaStream,
        src: &dyn DeviceRead,
        dst: &mut dyn DeviceWrite,
    ) -> Result<()> {
        let (src_addr, src_len, src_guard) = src.read_range(stream);
        drop(src_guard);
        let (dst_addr, dst_len, dst_guard) = dst.write_range(stream);
        drop(dst_guard);
        self.check_lengths(src_len, dst_len)?;
        let align = 1u64 << (src_addr | dst_addr | 256).trailing_zeros();
        let plan = self.plan(align)?;
        gpu.launch(&plan, stream, &mut [Bind::Read(src), Bind::Write(dst)])
    }
}

/// Plans covering every strided-copy kernel entry, for signature tests.
pub(crate) fn sample_plans() -> Vec<LaunchPlan> {
    [1u64, 2, 4, 8, 16]
        .iter()
        .map(|&w| StridedCopy::pack(4, 32 * w, 64 * w as i64).plan(w).expect("sample plans are valid"))
        .collect()
}
