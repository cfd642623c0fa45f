//! Pack and unpack on the GPU (kernels/pack.cu) and on the emulator.
//!
//! A layout with one segment per position runs on the word-specialised
//! strided kernel (1, 2, 4, 8 or 16-byte words, chosen from the segment
//! length, strides, offsets and buffer alignments); any other layout runs on
//! the segment kernel with a segment table uploaded to the device. More than
//! [`PACK_MAX_DIMS`] dimensions are first folded into segments.

use std::sync::Arc;

use cudarc::driver::CudaStream;

use crate::error::{Error, Result};
use crate::gpu::{Access, Bind, Blob, BufferUse, DeviceRead, DeviceWrite, Dim3, Gpu, KernelArg, LaunchPlan};

use super::canonical::{Dim, Layout, Segment};
use super::Committed;

/// The most grid dimensions the pack kernels take.
pub const PACK_MAX_DIMS: usize = 8;

/// The kernels' position grid (`struct PackDims` in kernels/pack.cu):
/// outermost dimension first, unused leading dimensions with count 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackDims {
    /// Positions along each dimension.
    pub count: [u64; PACK_MAX_DIMS],
    /// Byte stride of each dimension.
    pub stride: [i64; PACK_MAX_DIMS],
}

impl PackDims {
    /// The grid of `dims` (at most [`PACK_MAX_DIMS`]), right-aligned.
    pub fn new(dims: &[Dim]) -> Option<Self> {
        if dims.len() > PACK_MAX_DIMS {
            return None;
        }
        let mut p = PackDims { count: [1; PACK_MAX_DIMS], stride: [0; PACK_MAX_DIMS] };
        let first = PACK_MAX_DIMS - dims.len();
        for (k, d) in dims.iter().enumerate() {
            p.count[first + k] = d.count;
            p.stride[first + k] = d.stride;
        }
        Some(p)
    }

    fn blob(&self) -> Blob {
        let mut words = [0u64; 2 * PACK_MAX_DIMS];
        words[..PACK_MAX_DIMS].copy_from_slice(&self.count);
        for (w, s) in words[PACK_MAX_DIMS..].iter_mut().zip(self.stride) {
            *w = s as u64;
        }
        Blob::from_words(&words).expect("16 words fit a blob")
    }
}

/// Which way a pack plan moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackDirection {
    /// Typed buffer -> packed bytes.
    Pack,
    /// Packed bytes -> typed buffer.
    Unpack,
}

/// A GPU pack: the launch plan, and for the segment kernel the segment table
/// (bytes of `{i64 offset, u64 len, u64 packed}` entries) to bind to slot 2.
/// Slot 0 is the typed buffer, slot 1 the packed buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuPack {
    /// The launch plan.
    pub plan: LaunchPlan,
    /// The segment table, for the segment kernel.
    pub table: Option<Vec<u8>>,
}

const BLOCK_THREADS: u32 = 256;
const MAX_BLOCKS: u64 = 4096;

fn blocks_for(threads: u64) -> u32 {
    threads.div_ceil(u64::from(BLOCK_THREADS)).clamp(1, MAX_BLOCKS) as u32
}

/// Folds the innermost dimensions into segments until at most `max` remain.
fn fold_dims(mut layout: Layout, max: usize) -> Result<Layout> {
    while layout.dims.len() > max {
        let d = layout.dims.pop().expect("more than max dims");
        let n = layout.segments.len() as u128 * u128::from(d.count);
        if n > super::MAX_SEGMENTS as u128 {
            return Err(Error::invalid("datatype", format!("{n} segments"), "too many segments for the GPU table"));
        }
        let mut segs = Vec::with_capacity(n as usize);
        for i in 0..d.count as i64 {
            for s in &layout.segments {
                segs.push(Segment { offset: s.offset + i * d.stride, len: s.len });
            }
        }
        layout.segments = segs;
    }
    Ok(layout)
}

impl Committed {
    /// The plan that packs (or unpacks) `count` elements between a typed
    /// buffer, whose element 0 starts at byte `origin`, and packed bytes
    /// starting at byte `position`. `typed_align` and `dense_align` are the
    /// alignments of the two buffers' base addresses (powers of two).
    pub fn gpu_plan(
        &self,
        count: i64,
        origin: u64,
        position: u64,
        dir: PackDirection,
        typed_align: u64,
        dense_align: u64,
    ) -> Result<GpuPack> {
        for (what, a) in [("typed_align", typed_align), ("dense_align", dense_align)] {
            if !a.is_power_of_two() {
                return Err(Error::invalid(what, a, "must be a power of two"));
            }
        }
        let layout = self.layout_for(count)?;
        let total = layout.positions() * layout.segment_bytes();
        let (lo, hi) = layout.span();
        if i128::from(origin) + lo < 0 {
            return Err(Error::invalid("origin", origin, format!("the typemap starts {} bytes before element 0", -lo)));
        }
        let typed_need = u64::try_from(i128::from(origin) + hi)
            .map_err(|_| Error::invalid("origin", origin, "typemap end overflows u64"))?;
        let dense_need = position
            .checked_add(total)
            .ok_or_else(|| Error::invalid("position", position, "position + packed bytes overflows u64"))?;
        let (typed_access, dense_access) = match dir {
            PackDirection::Pack => (Access::Read, Access::Write),
            PackDirection::Unpack => (Access::Write, Access::Read),
        };
        let unpack = KernelArg::I32((dir == PackDirection::Unpack) as i32);

        if let ([seg], true) = (layout.segments.as_slice(), layout.dims.len() <= PACK_MAX_DIMS) {
            let typed_start = (i128::from(origin) + i128::from(seg.offset)) as u64;
            let mut g = seg.len | typed_start | position | typed_align | dense_align | 16;
            for d in &layout.dims {
                g |= d.stride.unsigned_abs();
            }
            let word = 1u64 << g.trailing_zeros().min(4);
            let kernel = match word {
                1 => "memwall_pack_strided_w1",
                2 => "memwall_pack_strided_w2",
                4 => "memwall_pack_strided_w4",
                8 => "memwall_pack_strided_w8",
                _ => "memwall_pack_strided_w16",
            };
            let total_words = total / word;
            let dims = PackDims::new(&layout.dims).expect("at most PACK_MAX_DIMS dims");
            let plan = LaunchPlan {
                module: "pack",
                kernel,
                grid: Dim3::x(blocks_for(total_words)),
                block: Dim3::x(BLOCK_THREADS),
                dynamic_smem_bytes: 0,
                args: vec![
                    KernelArg::Buffer { slot: 0, offset: typed_start },
                    KernelArg::Buffer { slot: 1, offset: position },
                    KernelArg::Blob(dims.blob()),
                    KernelArg::U64((seg.len / word).max(1)),
                    KernelArg::U64(total_words),
                    unpack,
                ],
                buffers: vec![
                    BufferUse {
                        name: "typed",
                        access: typed_access,
                        min_bytes: typed_need.max(typed_start),
                        align: word.min(typed_align),
                    },
                    BufferUse {
                        name: "packed",
                        access: dense_access,
                        min_bytes: dense_need,
                        align: word.min(dense_align),
                    },
                ],
            };
            return Ok(GpuPack { plan, table: None });
        }

        let layout = fold_dims(layout, PACK_MAX_DIMS)?;
        let dims = PackDims::new(&layout.dims).expect("folded to PACK_MAX_DIMS dims");
        // The typed pointer goes to the lowest segment start, never past the
        // data (all of a type's data may lie before its origin), and the
        // table's offsets are relative to it.
        let seg_lo = layout.segments.iter().map(|s| s.offset).min().unwrap_or(0);
        let typed_start = (i128::from(origin) + i128::from(seg_lo)) as u64; // >= origin + lo >= 0
        let mut table = Vec::with_capacity(layout.segments.len() * 24);
        let mut packed = 0u64;
        for s in &layout.segments {
            table.extend_from_slice(&(s.offset - seg_lo).to_le_bytes());
            table.extend_from_slice(&s.len.to_le_bytes());
            table.extend_from_slice(&packed.to_le_bytes());
            packed += s.len;
        }
        let nsegs = layout.segments.len() as u64;
        let items = layout.positions() * nsegs;
        let plan = LaunchPlan {
            module: "pack",
            kernel: "memwall_pack_segments",
            grid: Dim3::x(blocks_for(items * 32)),
            block: Dim3::x(BLOCK_THREADS),
            dynamic_smem_bytes: 0,
            args: vec![
                KernelArg::Buffer { slot: 0, offset: typed_start },
                KernelArg::Buffer { slot: 1, offset: position },
                KernelArg::Buffer { slot: 2, offset: 0 },
                KernelArg::U64(nsegs.max(1)),
                KernelArg::Blob(dims.blob()),
                KernelArg::U64(packed),
                KernelArg::U64(items),
                unpack,
            ],
            buffers: vec![
                BufferUse { name: "typed", access: typed_access, min_bytes: typed_need.max(typed_start), align: 1 },
                BufferUse { name: "packed", access: dense_access, min_bytes: dense_need, align: 1 },
                BufferUse { name: "segments", access: Access::Read, min_bytes: table.len() as u64, align: 8 },
            ],
        };
        Ok(GpuPack { plan, table: Some(table) })
    }

    /// `MPI_Pack` on the GPU: packs `count` elements of `src` (element 0 at
    /// byte `origin`) into `dst` from `*position`, stream-ordered on `stream`,
    /// and advances `*position`. `dst` may be device memory or mapped pinned
    /// host memory ([`crate::gpu::PinnedBuffer::mapped_view`]) for a one-shot
    /// pack to the host; synchronize `stream` before reading it there.
    #[allow(clippy::too_many_arguments)]
    pub fn pack_gpu(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        src: &dyn DeviceRead,
        origin: u64,
        count: i64,
        dst: &mut dyn DeviceWrite,
        position: &mut u64,
    ) -> Result<()> {
        let (src_addr, _, g) = src.read_range(stream);
        drop(g);
        let (dst_addr, _, g) = dst.write_range(stream);
        drop(g);
        let p = self.gpu_plan(count, origin, *position, PackDirection::Pack, align_of(src_addr), align_of(dst_addr))?;
        let advance = self.pack_size(count)? as u64;
        // Nothing to move (count 0, or a type with no data): no launch, and
        // no zero-byte segment table, which the driver would refuse.
        if advance > 0 {
            run_on_gpu(gpu, stream, &p, src, dst, PackDirection::Pack)?;
        }
        *position += advance;
        Ok(())
    }

    /// `MPI_Unpack` on the GPU: unpacks `count` elements from `src` at
    /// `*position` into `dst` (element 0 at byte `origin`), stream-ordered.
    #[allow(clippy::too_many_arguments)]
    pub fn unpack_gpu(
        &self,
        gpu: &Gpu,
        stream: &Arc<CudaStream>,
        src: &dyn DeviceRead,
        position: &mut u64,
        dst: &mut dyn DeviceWrite,
        origin: u64,
        count: i64,
    ) -> Result<()> {
        let (src_addr, _, g) = src.read_range(stream);
        drop(g);
        let (dst_addr, _, g) = dst.write_range(stream);
        drop(g);
        let p =
            self.gpu_plan(count, origin, *position, PackDirection::Unpack, align_of(dst_addr), align_of(src_addr))?;
        let advance = self.pack_size(count)? as u64;
        if advance > 0 {
            run_on_gpu(gpu, stream, &p, src, dst, PackDirection::Unpack)?;
        }
        *position += advance;
        Ok(())
    }

    /// Packs on the CPU emulator, through the same plan as [`Self::pack_gpu`].
    #[cfg(feature = "emu")]
    pub fn pack_emu(
        &self,
        emu: &crate::emu::Emulator,
        src: &[u8],
        origin: u64,
        count: i64,
        dst: &mut [u8],
        position: &mut u64,
    ) -> Result<()> {
        use crate::emu::HostBind;
        let p = self.gpu_plan(
            count,
            origin,
            *position,
            PackDirection::Pack,
            align_of(src.as_ptr() as u64),
            align_of(dst.as_ptr() as u64),
        )?;
        let advance = self.pack_size(count)? as u64;
        let table = aligned_table(&p);
        let mut binds = vec![HostBind::Read(src), HostBind::Write(dst)];
        if let Some(t) = &table {
            binds.push(HostBind::read(t));
        }
        emu.launch(&p.plan, &mut binds)?;
        *position += advance;
        Ok(())
    }

    /// Unpacks on the CPU emulator, through the same plan as [`Self::unpack_gpu`].
    #[cfg(feature = "emu")]
    pub fn unpack_emu(
        &self,
        emu: &crate::emu::Emulator,
        src: &[u8],
        position: &mut u64,
        dst: &mut [u8],
        origin: u64,
        count: i64,
    ) -> Result<()> {
        use crate::emu::HostBind;
        let p = self.gpu_plan(
            count,
            origin,
            *position,
            PackDirection::Unpack,
            align_of(dst.as_ptr() as u64),
            align_of(src.as_ptr() as u64),
        )?;
        let advance = self.pack_size(count)? as u64;
        let table = aligned_table(&p);
        let mut binds = vec![HostBind::Write(dst), HostBind::Read(src)];
        if let Some(t) = &table {
            binds.push(HostBind::read(t));
        }
        emu.launch(&p.plan, &mut binds)?;
        *position += advance;
        Ok(())
    }
}

/// The largest power of two (up to 256) dividing `addr`.
fn align_of(addr: u64) -> u64 {
    1 << (addr | 256).trailing_zeros()
}

/// The segment table as u64 words (8-byte aligned for the kernel).
#[cfg(feature = "emu")]
fn aligned_table(p: &GpuPack) -> Option<Vec<u64>> {
    p.table.as_ref().map(|t| t.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// Launches a pack plan with the typed and packed buffers in their slots,
/// uploading the segment table first when the plan has one.
fn run_on_gpu(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    p: &GpuPack,
    read: &dyn DeviceRead,
    write: &mut dyn DeviceWrite,
    dir: PackDirection,
) -> Result<()> {
    let table = match &p.table {
        Some(t) => Some(stream.clone_htod(t).map_err(|e| Error::driver("uploading the segment table", e))?),
        None => None,
    };
    let (typed, dense) = match dir {
        PackDirection::Pack => (Bind::Read(read), Bind::Write(write)),
        PackDirection::Unpack => (Bind::Write(write), Bind::Read(read)),
    };
    match &table {
        None => gpu.launch(&p.plan, stream, &mut [typed, dense]),
        Some(t) => gpu.launch(&p.plan, stream, &mut [typed, dense, Bind::Read(t)]),
    }
}

/// Plans covering every pack kernel entry, for the signature tests.
pub(crate) fn sample_plans() -> Vec<LaunchPlan> {
    use super::types::Datatype;
    let mut plans = Vec::new();
    for w in [1i64, 2, 4, 8, 16] {
        let t = Datatype::byte().contiguous(w).and_then(|b| b.vector(4, 1, 2)).expect("valid sample type");
        let c = Committed::new(&t).expect("sample commits");
        plans.push(c.gpu_plan(1, 0, 0, PackDirection::Pack, 256, 256).expect("sample plan").plan);
    }
    let t = Datatype::byte().hindexed(&[3, 5], &[0, 10]).expect("valid sample type");
    let c = Committed::new(&t).expect("sample commits");
    plans.push(c.gpu_plan(2, 0, 0, PackDirection::Pack, 256, 256).expect("sample plan").plan);
    plans
}
