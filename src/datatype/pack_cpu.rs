//! `MPI_Pack` / `MPI_Unpack` on the CPU over canonical layouts.
//!
//! The loops: the outer dimensions run as an odometer; the innermost
//! dimension runs as a tight loop whose copy is specialised on the segment
//! length (1, 2, 4, 8, 16 bytes become single loads and stores; longer
//! segments are memcpy).

use std::ptr;

use crate::error::{Error, Result};

use super::canonical::Layout;

/// Which way bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Typemap -> dense.
    Pack,
    /// Dense -> typemap.
    Unpack,
}

/// Moves every run of `layout` between the typed buffer (relative to
/// `origin`) and the dense buffer (from `dense_start`).
///
/// # Safety
/// Every byte `[origin + run.offset, + run.len)` must lie inside `typed`,
/// `[dense_start, dense_start + layout bytes)` inside `dense`, and the two
/// must not overlap. `run` checks all of this before calling.
unsafe fn copy_runs(layout: &Layout, typed: *mut u8, origin: isize, dense: *mut u8, dir: Direction) {
    let mut out = 0usize;
    // SAFETY: (for the closure's body) the caller guarantees every run lies
    // inside both buffers; `out` advances by exactly the run lengths, whose
    // sum is the dense length the caller checked.
    let mut copy = |offset: i64, len: usize| unsafe {
        let t = typed.offset(origin + offset as isize);
        let d = dense.add(out);
        match dir {
            Direction::Pack => copy_small(t, d, len),
            Direction::Unpack => copy_small(d, t, len),
        }
        out += len;
    };
    if layout.is_empty() {
        return;
    }
    // Innermost dimension as a tight loop when the layout is a single segment.
    if let ([seg], Some(inner)) = (layout.segments.as_slice(), layout.dims.last()) {
        let outer = Layout { dims: layout.dims[..layout.dims.len() - 1].to_vec(), segments: vec![*seg] };
        let (count, stride, len) = (inner.count, inner.stride, seg.len as usize);
        outer.for_each_run(|base, _| {
            let mut off = base;
            for _ in 0..count {
                copy(off, len);
                off += stride;
            }
        });
        return;
    }
    layout.for_each_run(|offset, len| copy(offset, len as usize));
}

/// Copies `len` bytes; constant-size copies for the common small lengths.
///
/// # Safety
/// `src` and `dst` are valid for `len` bytes and do not overlap.
#[inline(always)]
unsafe fn copy_small(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller guarantees both ranges; unaligned reads and writes
    // of the exact length stay inside them.
    unsafe {
        match len {
            1 => *dst = *src,
            2 => ptr::write_unaligned(dst as *mut u16, ptr::read_unaligned(src as *const u16)),
            4 => ptr::write_unaligned(dst as *mut u32, ptr::read_unaligned(src as *const u32)),
            8 => ptr::write_unaligned(dst as *mut u64, ptr::read_unaligned(src as *const u64)),
            16 => ptr::write_unaligned(dst as *mut u128, ptr::read_unaligned(src as *const u128)),
            _ => ptr::copy_nonoverlapping(src, dst, len),
        }
    }
}

/// A buffer as a raw pointer and length (the source side is only read).
pub(crate) struct RawBuf {
    pub ptr: *mut u8,
    pub len: usize,
}

/// Checks the buffers, then packs or unpacks `layout` (one element, or
/// `count` elements already folded in) between `typed` at `origin` and
/// `dense` at `*position`, advancing `*position`.
pub(crate) fn run(
    layout: &Layout,
    typed: RawBuf,
    origin: usize,
    dense: RawBuf,
    position: &mut usize,
    dir: Direction,
) -> Result<()> {
    let (typed_ptr, typed_len, dense_ptr, dense_len) = (typed.ptr, typed.len, dense.ptr, dense.len);
    let bytes = u128::from(layout.positions()) * u128::from(layout.segment_bytes());
    let end = *position as u128 + bytes;
    if end > dense_len as u128 {
        let what = if dir == Direction::Pack { "pack buffer" } else { "packed input" };
        return Err(Error::BufferTooSmall { what, needed: end, got: dense_len });
    }
    let (lo, hi) = layout.span();
    let (lo, hi) = (origin as i128 + lo, origin as i128 + hi);
    if !layout.is_empty() && (lo < 0 || hi > typed_len as i128) {
        return Err(Error::invalid(
            "buffer/origin",
            format!("origin {origin} in {typed_len} bytes"),
            format!("the typemap reaches bytes {lo}..{hi} of the buffer"),
        ));
    }
    // SAFETY: every run lies in [lo, hi) within the typed buffer, and the
    // dense range [position, end) within the dense buffer (both checked
    // above). The buffers are distinct Rust borrows, so they do not overlap.
    unsafe { copy_runs(layout, typed_ptr, origin as isize, dense_ptr.add(*position), dir) };
    *position = end as usize;
    Ok(())
}
