//! MPI derived datatypes, their canonical strided form, and pack/unpack on
//! the CPU and the GPU.
//!
//! Build a [`Datatype`] with the MPI constructors, commit it (canonicalize)
//! into a [`Committed`], then pack and unpack with `MPI_Pack` semantics:
//!
//! ```
//! use memwall::datatype::{Committed, Datatype, Primitive};
//! // Every other f64 of 4 (an MPI vector).
//! let t = Datatype::named(Primitive::F64).vector(4, 1, 2)?;
//! let c = Committed::new(&t)?;
//! let src: Vec<u8> = (0..64).collect();
//! let mut packed = vec![0u8; c.pack_size(1)?];
//! let mut position = 0;
//! c.pack(&src, 0, 1, &mut packed, &mut position)?;
//! assert_eq!(position, 32);
//! assert_eq!(&packed[8..16], &src[16..24]);
//! # Ok::<(), memwall::Error>(())
//! ```

mod canonical;
mod pack_cpu;
mod pack_gpu;
mod types;

#[cfg(test)]
mod test;

pub use canonical::{layout_of, Dim, Layout, Segment, MAX_SEGMENTS};
pub use pack_gpu::{GpuPack, PackDims, PackDirection, PACK_MAX_DIMS};

pub(crate) use pack_gpu::sample_plans;
pub use types::{Datatype, Order, Primitive, StructPadding};

use crate::error::{Error, Result};
use pack_cpu::{Direction, RawBuf, Reach};

/// A datatype ready to pack: its canonical [`Layout`] computed once (what
/// `MPI_Type_commit` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    ty: Datatype,
    layout: Layout,
    /// The layout's reach, for packing one element without walking it.
    one: Reach,
}

impl Committed {
    /// Canonicalizes `ty`.
    pub fn new(ty: &Datatype) -> Result<Self> {
        let layout = layout_of(ty)?;
        let one = Reach::of(&layout);
        Ok(Committed { ty: ty.clone(), layout, one })
    }

    /// The datatype.
    pub fn datatype(&self) -> &Datatype {
        &self.ty
    }

    /// The canonical layout of one element.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn check_count(count: i64) -> Result<u64> {
        u64::try_from(count).map_err(|_| Error::invalid("count", count, "must not be negative"))
    }

    /// Bytes `count` elements pack into (`MPI_Pack_size`, exact here).
    pub fn pack_size(&self, count: i64) -> Result<usize> {
        let n = Self::check_count(count)?;
        let bytes = u128::from(n) * self.ty.size() as u128;
        usize::try_from(bytes)
            .ok()
            .filter(|&b| b as u128 <= i64::MAX as u128)
            .ok_or_else(|| Error::invalid("count", count, format!("{count} x {} bytes overflows", self.ty.size())))
    }

    /// The canonical layout of `count` consecutive elements.
    pub fn layout_for(&self, count: i64) -> Result<Layout> {
        let n = Self::check_count(count)?;
        self.pack_size(count)?;
        if n > 1 {
            let reach = i128::from(self.ty.extent()) * (i128::from(n) - 1);
            if i64::try_from(reach).is_err() {
                return Err(Error::invalid(
                    "count",
                    count,
                    format!("{} elements of extent {} overflow i64", n, self.ty.extent()),
                ));
            }
        }
        Ok(if n == 1 { self.layout.clone() } else { self.layout.repeated(n, self.ty.extent()) })
    }

    /// Packs (`Direction::Pack`) or unpacks between `typed` (element 0 at
    /// `origin`) and `dense` at `*position`. One element uses the committed
    /// layout and its precomputed reach: nothing is allocated or walked
    /// before the copy (those were most of a small pack's time).
    #[inline]
    fn move_bytes(
        &self,
        typed: RawBuf,
        origin: usize,
        count: i64,
        dense: RawBuf,
        position: &mut usize,
        dir: Direction,
    ) -> Result<()> {
        if count == 1 {
            return pack_cpu::run(&self.layout, self.one, typed, origin, dense, position, dir);
        }
        let layout = self.layout_for(count)?;
        pack_cpu::run(&layout, Reach::of(&layout), typed, origin, dense, position, dir)
    }

    /// `MPI_Pack`: packs `count` elements, element `e` starting at byte
    /// `origin + e * extent` of `src`, into `dst` from `*position`, and
    /// advances `*position`. Errors, with nothing written, when the
    /// typemap reaches outside `src` or `dst` has too little room.
    #[inline]
    pub fn pack(&self, src: &[u8], origin: usize, count: i64, dst: &mut [u8], position: &mut usize) -> Result<()> {
        let typed = RawBuf { ptr: src.as_ptr().cast_mut(), len: src.len() };
        self.move_bytes(
            typed,
            origin,
            count,
            RawBuf { ptr: dst.as_mut_ptr(), len: dst.len() },
            position,
            Direction::Pack,
        )
    }

    /// `MPI_Unpack`: unpacks `count` elements from `src` at `*position` into
    /// `dst` (element `e` at `origin + e * extent`), and advances `*position`.
    #[inline]
    pub fn unpack(&self, src: &[u8], position: &mut usize, dst: &mut [u8], origin: usize, count: i64) -> Result<()> {
        // `run` only reads through the dense pointer when unpacking.
        let dense = RawBuf { ptr: src.as_ptr().cast_mut(), len: src.len() };
        self.move_bytes(
            RawBuf { ptr: dst.as_mut_ptr(), len: dst.len() },
            origin,
            count,
            dense,
            position,
            Direction::Unpack,
        )
    }
}
