//! `MPI_Pack` / `MPI_Unpack` on the CPU over canonical layouts.
//!
//! The loops: the outer dimensions run as an odometer; the innermost
//! dimension runs as a tight loop whose copy is specialised on the segment
//! length (1, 2, 4, 8, 16 bytes become single loads and stores; longer
//! segments are memcpy).

use std::ptr;

use crate::error::{Error, Result};

use super::canonical::{for_each_position, Layout};

/// Which way bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Typemap -> dense.
    Pack,
    /// Dense -> typemap.
    Unpack,
}

/// Moves every run of `layout` between the typed buffer (at `origin`) and
/// the dense buffer.
///
/// # Safety
/// Every byte `[origin + run.offset, + run.len)` must lie inside `typed`,
/// `[0, layout bytes)` inside `dense`, and the two must not overlap. `run`
/// checks all of this before calling.
unsafe fn copy_runs(layout: &Layout, typed: *mut u8, origin: isize, dense: *mut u8, dir: Direction) {
    if layout.is_empty() {
        return;
    }
    let mut d = dense;
    if let ([seg], Some(inner)) = (layout.segments.as_slice(), layout.dims.last()) {
        // One segment: the innermost dimension is a tight loop specialised on
        // the segment length, the outer dimensions an odometer.
        let outer = &layout.dims[..layout.dims.len() - 1];
        let (count, stride, len) = (inner.count, inner.stride as isize, seg.len as usize);
        let total = layout.positions() as usize * len;
        let stream = dir == Direction::Pack && streaming_stores_pay(total, len, dense);
        let avx = has_avx();
        // SAFETY: the caller guarantees every run lies inside both buffers;
        // `d` advances by exactly the run lengths, whose sum is the dense
        // length the caller checked; short streaming runs need `d` 16-byte
        // aligned and 16-byte runs, which streaming_stores_pay checked.
        let mut row_block = |base: i64| unsafe {
            let t = typed.offset(origin + (base + seg.offset) as isize);
            d = match dir {
                Direction::Pack if stream => rows_streaming(t, d, count, stride, len),
                Direction::Pack => rows_cached::<true>(avx, t, d, count, stride, len),
                Direction::Unpack => rows_cached::<false>(avx, t, d, count, stride, len),
            };
        };
        if outer.is_empty() {
            // 2-D (and contiguous-by-rows) layouts: no odometer to set up.
            row_block(0);
        } else {
            for_each_position(outer, row_block);
        }
        #[cfg(target_arch = "x86_64")]
        if stream {
            // SAFETY: sfence has no preconditions; it orders the streaming
            // stores above before any later store, as memcpy's do.
            unsafe { std::arch::x86_64::_mm_sfence() };
        }
        return;
    }
    // SAFETY: as above: every run lies inside both buffers, and `d` advances
    // by exactly the run lengths.
    layout.for_each_run(|offset, len| unsafe {
        let t = typed.offset(origin + offset as isize);
        d = match dir {
            Direction::Pack => rows::<true, 0>(t, d, 1, 0, len as usize),
            Direction::Unpack => rows::<false, 0>(t, d, 1, 0, len as usize),
        };
    });
}

/// Packed output larger than this skips the caches (non-temporal stores),
/// as glibc's memcpy does for large copies: the packed bytes are not read
/// again soon, and streaming them saves the read-for-ownership of every
/// destination line, which otherwise doubles the write traffic to DRAM.
const STREAMING_BYTES: usize = 4 << 20;

/// Runs at least this long stream whole 64-byte lines with 32-byte
/// vector stores when the CPU has AVX (see [`rows_streaming_lines`]); shorter runs
/// use 16-byte streaming stores when they can.
const LINE_STREAMING_MIN_RUN: usize = 128;

/// Whether to pack with non-temporal stores: a large output of runs that
/// are either long ([`LINE_STREAMING_MIN_RUN`]) or 16-byte runs to a 16-byte
/// aligned destination, on x86-64.
fn streaming_stores_pay(total: usize, len: usize, dense: *mut u8) -> bool {
    cfg!(target_arch = "x86_64")
        && total >= STREAMING_BYTES
        && (len >= LINE_STREAMING_MIN_RUN || (len % 16 == 0 && (dense as usize) % 16 == 0))
}

/// Packs `count` runs of `len` bytes with non-temporal stores.
///
/// # Safety
/// As [`rows`], and when `len < LINE_STREAMING_MIN_RUN`: `d` 16-byte
/// aligned and `len % 16 == 0` ([`streaming_stores_pay`]).
#[inline(always)]
unsafe fn rows_streaming(t: *mut u8, d: *mut u8, count: u64, stride: isize, len: usize) -> *mut u8 {
    #[cfg(target_arch = "x86_64")]
    {
        if len >= LINE_STREAMING_MIN_RUN {
            // SAFETY: forwarded; the line loop needs nothing more than `rows`.
            return unsafe { rows_streaming_lines(t, d, count, stride, len) };
        }
        // SAFETY: forwarded with this function's contract.
        unsafe { rows_streaming_16(t, d, count, stride, len) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: forwarded to `rows` with the same arguments.
    unsafe {
        rows::<true, 0>(t, d, count, stride, len)
    }
}

/// 16-byte non-temporal stores, for runs of a multiple of 16 bytes to a
/// 16-byte aligned destination.
///
/// # Safety
/// As [`rows`], and `d` 16-byte aligned, `len % 16 == 0`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows_streaming_16(mut t: *mut u8, mut d: *mut u8, count: u64, stride: isize, len: usize) -> *mut u8 {
    for _ in 0..count {
        // SAFETY: both runs lie inside the ranges the caller guarantees;
        // `d` is 16-byte aligned because the first one is and every earlier
        // run length is a multiple of 16.
        unsafe {
            stream16(t, d, len);
            t = t.offset(stride);
            d = d.add(len);
        }
    }
    d
}

/// Copies `n` bytes (a multiple of 16) with 16-byte streaming stores.
///
/// # Safety
/// `[t, t + n)` readable, `[d, d + n)` writable and 16-byte aligned, not
/// overlapping, `n % 16 == 0`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn stream16(t: *const u8, d: *mut u8, n: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
    let mut i = 0;
    while i < n {
        // SAFETY: [t + i, +16) and [d + i, +16) lie in the ranges the caller
        // guarantees; d + i is 16-byte aligned; SSE2 is the x86-64 baseline.
        unsafe { _mm_stream_si128(d.add(i) as *mut __m128i, _mm_loadu_si128(t.add(i) as *const __m128i)) };
        i += 16;
    }
}

/// Whole destination lines with non-temporal stores, any alignment: each
/// run's bytes before its first 64-byte destination boundary and after its
/// last one are copied by [`edge`], the lines between are streamed with two
/// 32-byte stores (AVX) or four 16-byte ones. Measured on an AMD EPYC (this
/// project's VM, 64 MiB packed from 512 B blocks): 16-byte streaming stores
/// 5.2-6.0 GB/s, 32-byte ones 7.8-8.7 (64-byte AVX-512 ones 8.0-8.9, not
/// used: their intrinsics need Rust 1.89, above this crate's MSRV).
///
/// # Safety
/// As [`rows`].
#[cfg(target_arch = "x86_64")]
unsafe fn rows_streaming_lines(t: *mut u8, d: *mut u8, count: u64, stride: isize, len: usize) -> *mut u8 {
    if has_avx() {
        // SAFETY: the CPU has AVX (checked); the rest is the caller's.
        unsafe { lines_avx(t, d, count, stride, len) }
    } else {
        // SAFETY: SSE2 is baseline; the rest is the caller's.
        unsafe { lines_sse2(t, d, count, stride, len) }
    }
}

/// The line loop of [`rows_streaming_lines`], with `$line` streaming the 64
/// bytes at `t` to the 64-byte aligned `d`.
#[cfg(target_arch = "x86_64")]
macro_rules! line_loop {
    ($t:ident, $d:ident, $count:ident, $stride:ident, $len:ident, |$src:ident, $dst:ident| $line:block) => {{
        for _ in 0..$count {
            let head = ($d.align_offset(64)).min($len);
            let lines = ($len - head) / 64;
            // SAFETY: all offsets stay inside the run [t, t + len) and
            // [d, d + len) the caller guarantees; `d + head` is 64-byte
            // aligned by construction of `head` (align_offset on a byte
            // pointer is exact).
            unsafe {
                edge($t, $d, head);
                let mut i = head;
                for _ in 0..lines {
                    let $src = $t.add(i);
                    let $dst = $d.add(i);
                    $line
                    i += 64;
                }
                edge($t.add(i), $d.add(i), $len - i);
                $t = $t.offset($stride);
                $d = $d.add($len);
            }
        }
        $d
    }};
}

/// The partial lines at either end of a run: 16-byte streaming stores when
/// the destination and length allow (so a line is never written partly by
/// ordinary and partly by streaming stores, which costs a read-for-ownership
/// and a write-combining flush; measured 2x slower for 128 B runs), else an
/// ordinary copy.
///
/// # Safety
/// `[t, t + n)` readable, `[d, d + n)` writable, not overlapping.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn edge(t: *const u8, d: *mut u8, n: usize) {
    if (d as usize) % 16 == 0 && n % 16 == 0 {
        // SAFETY: per the caller, with the alignment just checked.
        unsafe { stream16(t, d, n) };
    } else {
        // SAFETY: per the caller.
        unsafe { ptr::copy_nonoverlapping(t, d, n) };
    }
}

/// [`rows_streaming_lines`] with 32-byte AVX stores.
///
/// # Safety
/// As [`rows`], on a CPU with AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn lines_avx(mut t: *mut u8, mut d: *mut u8, count: u64, stride: isize, len: usize) -> *mut u8 {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_stream_si256};
    line_loop!(t, d, count, stride, len, |src, dst| {
        let a = _mm256_loadu_si256(src as *const __m256i);
        let b = _mm256_loadu_si256(src.add(32) as *const __m256i);
        _mm256_stream_si256(dst as *mut __m256i, a);
        _mm256_stream_si256(dst.add(32) as *mut __m256i, b);
    })
}

/// [`rows_streaming_lines`] with 16-byte SSE2 stores.
///
/// # Safety
/// As [`rows`].
#[cfg(target_arch = "x86_64")]
unsafe fn lines_sse2(mut t: *mut u8, mut d: *mut u8, count: u64, stride: isize, len: usize) -> *mut u8 {
    line_loop!(t, d, count, stride, len, |src, dst| {
        stream16(src, dst, 64);
    })
}

/// Whether the CPU has AVX (std caches the answer: one atomic load).
#[inline(always)]
fn has_avx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`rows_by_len`] through caches: compiled with AVX when `avx` (the CPU
/// has it), so the constant-length copies become 32-byte loads and stores.
/// Measured: a 1 KiB pack of 64 B runs is store-bound, and 16-byte SSE2
/// stores made it twice as long as glibc's memcpy, which uses the wide ones.
///
/// # Safety
/// As [`rows`]; `avx` only when the CPU has AVX.
#[inline(always)]
unsafe fn rows_cached<const PACK: bool>(
    avx: bool,
    t: *mut u8,
    d: *mut u8,
    count: u64,
    stride: isize,
    len: usize,
) -> *mut u8 {
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: the CPU has AVX (the caller's `avx`); the rest forwarded.
        return unsafe { rows_by_len_avx::<PACK>(t, d, count, stride, len) };
    }
    let _ = avx;
    // SAFETY: forwarded.
    unsafe { rows_by_len::<PACK>(t, d, count, stride, len) }
}

/// [`rows_by_len`] compiled with AVX.
///
/// # Safety
/// As [`rows`], on a CPU with AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn rows_by_len_avx<const PACK: bool>(t: *mut u8, d: *mut u8, count: u64, stride: isize, len: usize) -> *mut u8 {
    // SAFETY: forwarded.
    unsafe { rows_by_len::<PACK>(t, d, count, stride, len) }
}

/// [`rows`] with the length as a constant for the common lengths.
///
/// # Safety
/// As [`rows`].
#[inline(always)]
unsafe fn rows_by_len<const PACK: bool>(t: *mut u8, d: *mut u8, count: u64, stride: isize, len: usize) -> *mut u8 {
    // SAFETY: forwarded to `rows` with the same arguments.
    unsafe {
        match len {
            1 => rows::<PACK, 1>(t, d, count, stride, len),
            2 => rows::<PACK, 2>(t, d, count, stride, len),
            4 => rows::<PACK, 4>(t, d, count, stride, len),
            8 => rows::<PACK, 8>(t, d, count, stride, len),
            12 => rows::<PACK, 12>(t, d, count, stride, len),
            16 => rows::<PACK, 16>(t, d, count, stride, len),
            24 => rows::<PACK, 24>(t, d, count, stride, len),
            32 => rows::<PACK, 32>(t, d, count, stride, len),
            48 => rows::<PACK, 48>(t, d, count, stride, len),
            64 => rows::<PACK, 64>(t, d, count, stride, len),
            96 => rows::<PACK, 96>(t, d, count, stride, len),
            128 => rows::<PACK, 128>(t, d, count, stride, len),
            256 => rows::<PACK, 256>(t, d, count, stride, len),
            _ => rows::<PACK, 0>(t, d, count, stride, len),
        }
    }
}

/// Moves `count` runs of `len` bytes (`N` when non-zero, a compile-time
/// constant the compiler turns into plain loads and stores), the typed ones
/// `stride` bytes apart, the dense ones back to back. Returns the dense
/// pointer past the last run.
///
/// # Safety
/// Every typed run `[t + i * stride, + len)` and the dense range
/// `[d, d + count * len)` must be valid and not overlap.
#[inline(always)]
unsafe fn rows<const PACK: bool, const N: usize>(
    mut t: *mut u8,
    mut d: *mut u8,
    count: u64,
    stride: isize,
    len: usize,
) -> *mut u8 {
    let len = if N > 0 { N } else { len };
    for _ in 0..count {
        // SAFETY: the caller guarantees both runs are valid and disjoint.
        unsafe {
            if PACK {
                ptr::copy_nonoverlapping(t, d, len);
            } else {
                ptr::copy_nonoverlapping(d, t, len);
            }
            t = t.offset(stride);
            d = d.add(len);
        }
    }
    d
}

/// A buffer as a raw pointer and length (the source side is only read).
pub(crate) struct RawBuf {
    pub ptr: *mut u8,
    pub len: usize,
}

/// What [`run`] checks a layout's buffers against: the bytes it packs and
/// the typed bytes `[lo, hi)` it touches relative to its origin. Computed
/// once per committed type for one element (a small pack's checks then
/// walk nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reach {
    bytes: u128,
    lo: i128,
    hi: i128,
    empty: bool,
}

impl Reach {
    pub(crate) fn of(layout: &Layout) -> Self {
        let (lo, hi) = layout.span();
        let bytes = u128::from(layout.positions()) * u128::from(layout.segment_bytes());
        Reach { bytes, lo, hi, empty: layout.is_empty() }
    }
}

/// Checks the buffers, then packs or unpacks `layout` (one element, or
/// `count` elements already folded in; `reach` is [`Reach::of`] it) between
/// `typed` at `origin` and `dense` at `*position`, advancing `*position`.
pub(crate) fn run(
    layout: &Layout,
    reach: Reach,
    typed: RawBuf,
    origin: usize,
    dense: RawBuf,
    position: &mut usize,
    dir: Direction,
) -> Result<()> {
    let (typed_ptr, typed_len, dense_ptr, dense_len) = (typed.ptr, typed.len, dense.ptr, dense.len);
    let end = *position as u128 + reach.bytes;
    if end > dense_len as u128 {
        let what = if dir == Direction::Pack { "pack buffer" } else { "packed input" };
        return Err(Error::BufferTooSmall { what, needed: end, got: dense_len });
    }
    let (lo, hi) = (origin as i128 + reach.lo, origin as i128 + reach.hi);
    if !reach.empty && (lo < 0 || hi > typed_len as i128) {
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
