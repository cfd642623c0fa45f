//! Packing between a user's buffer (a raw address and a datatype, as MPI
//! passes them) and contiguous bytes, with memwall's CPU engine.
//!
//! The engine takes slices; a user buffer becomes the smallest slice that
//! covers every byte `count` elements touch ([`Region`]), with element 0 at
//! `origin` inside it. The engine checks each access against that slice.

use std::ffi::c_void;

use memwall::datatype::{Committed, Datatype};

/// The bytes `count` elements of a type touch, relative to the buffer
/// address: `[lo, hi)`. `None` when it overflows.
pub fn span(t: &Datatype, count: i64) -> Option<(i64, i64)> {
    if count <= 0 || t.size() == 0 {
        return Some((0, 0));
    }
    let reach = t.extent().checked_mul(count - 1)?;
    let lo = t.true_lb().checked_add(reach.min(0))?;
    let hi = t.true_lb().checked_add(t.true_extent())?.checked_add(reach.max(0))?;
    Some((lo, hi))
}

/// A user buffer as the engine sees it: the covering range and where
/// element 0 starts in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address of the range (never 0).
    pub start: u64,
    /// Bytes in the range.
    pub len: usize,
    /// Offset of the buffer address (element 0) from `start`.
    pub origin: usize,
}

impl Region {
    /// The region of `count` elements of `t` at address `base`; `None` when
    /// it would start at address 0 or wrap (such calls stay with the library).
    pub fn of(base: u64, t: &Datatype, count: i64) -> Option<Self> {
        let (lo, hi) = span(t, count)?;
        let (lo, hi) = (lo.min(0), hi.max(0));
        let start = base.checked_add_signed(lo)?;
        let end = base.checked_add_signed(hi)?;
        if start == 0 {
            return None;
        }
        Some(Region { start, len: usize::try_from(end - start).ok()?, origin: usize::try_from(base - start).ok()? })
    }

    /// Whether it shares a byte with `[addr, addr + len)`.
    pub fn overlaps(&self, addr: u64, len: usize) -> bool {
        let (a0, a1) = (u128::from(self.start), u128::from(self.start) + self.len as u128);
        let (b0, b1) = (u128::from(addr), u128::from(addr) + len as u128);
        a0 < b1 && b0 < a1
    }
}

/// Packs `count` elements at `buf` into `dst` from `*position`.
///
/// # Safety
/// Every byte the typemap of `count` elements at `buf` names must be
/// readable (MPI's own requirement on the caller), and must not overlap `dst`.
pub unsafe fn pack(c: &Committed, buf: *const c_void, count: i64, dst: &mut [u8], position: &mut usize) -> bool {
    let Some(r) = Region::of(buf as u64, c.datatype(), count) else { return false };
    if r.overlaps(dst.as_ptr() as u64, dst.len()) {
        return false;
    }
    // SAFETY: the region covers the bytes the typemap touches, which the
    // caller guarantees are readable; the engine reads only those bytes.
    let src = unsafe { std::slice::from_raw_parts(r.start as *const u8, r.len) };
    c.pack(src, r.origin, count, dst, position).is_ok()
}

/// Unpacks `count` elements from `src` at `*position` into `buf`.
///
/// # Safety
/// Every byte the typemap of `count` elements at `buf` names must be
/// writable and not overlap `src`.
pub unsafe fn unpack(c: &Committed, src: &[u8], position: &mut usize, buf: *mut c_void, count: i64) -> bool {
    let Some(r) = Region::of(buf as u64, c.datatype(), count) else { return false };
    if r.overlaps(src.as_ptr() as u64, src.len()) {
        return false;
    }
    // SAFETY: as in `pack`; the engine writes only the typemap's bytes, and
    // nothing else refers to them during the call (MPI's contract).
    let dst = unsafe { std::slice::from_raw_parts_mut(r.start as *mut u8, r.len) };
    c.unpack(src, position, dst, r.origin, count).is_ok()
}

/// Unpacks a received message of `src.len()` bytes (at most `count`
/// elements' worth) into `buf`: whole elements, then the leading bytes of a
/// partial one, as MPI fills a receive buffer from a shorter message.
///
/// # Safety
/// As [`unpack`] for `count` elements.
pub unsafe fn unpack_received(c: &Committed, src: &[u8], buf: *mut c_void, count: i64) -> bool {
    let size = c.datatype().size() as usize;
    if size == 0 || src.len() > size.saturating_mul(count.max(0) as usize) {
        return false;
    }
    let whole = src.len() / size;
    let mut pos = 0;
    // SAFETY: the caller's guarantee covers `count >= whole` elements.
    if whole > 0 && !unsafe { unpack(c, &src[..whole * size], &mut pos, buf, whole as i64) } {
        return false;
    }
    let rest = &src[pos..];
    if rest.is_empty() {
        return true;
    }
    let base = (buf as *mut u8).wrapping_offset(c.datatype().extent() as isize * whole as isize);
    let mut done = 0usize;
    c.layout().for_each_run(|offset, len| {
        let n = (len as usize).min(rest.len() - done);
        if n > 0 {
            // SAFETY: element `whole` < count lies in the caller's buffer; its
            // run at `offset` is part of the typemap the caller guarantees
            // writable, and `rest[done..done + n]` is in bounds.
            unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr().add(done), base.offset(offset as isize), n) };
            done += n;
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwall::datatype::Primitive;

    #[test]
    fn span_and_region() {
        let v = Datatype::named(Primitive::F64).vector(3, 1, 2).unwrap(); // true extent 40, extent 40
        assert_eq!(span(&v, 2), Some((0, 80)));
        let r = v.resized(-16, 8).unwrap(); // extent 8, lb -16
        assert_eq!(span(&r, 3), Some((0, 56)));
        let neg = Datatype::byte().hvector(2, 1, -10).unwrap();
        assert_eq!(span(&neg, 1), Some((-10, 1)));
        let reg = Region::of(1000, &neg, 1).unwrap();
        assert_eq!(reg, Region { start: 990, len: 11, origin: 10 });
        assert!(Region::of(5, &neg, 1).is_none(), "would wrap below 0");
        assert!(reg.overlaps(1000, 1) && !reg.overlaps(1001, 10) && !reg.overlaps(980, 10));
    }

    #[test]
    fn pack_unpack_raw_buffers() {
        let t = Datatype::named(Primitive::I32).vector(4, 1, 3).unwrap();
        let c = Committed::new(&t).unwrap();
        let src: Vec<i32> = (0..40).collect();
        let mut packed = vec![0u8; 32];
        let mut pos = 0;
        // SAFETY: src holds 2 elements' worth (extent 40 bytes, 2 x 40 <= 160).
        assert!(unsafe { pack(&c, src.as_ptr().cast(), 2, &mut packed, &mut pos) });
        let got: Vec<i32> = packed.chunks(4).map(|b| i32::from_ne_bytes(b.try_into().unwrap())).collect();
        assert_eq!(got, vec![0, 3, 6, 9, 10, 13, 16, 19]);
        let mut back = vec![-1i32; 40];
        // SAFETY: `back` holds 2 elements; a partial message of 1.5 elements.
        assert!(unsafe { unpack_received(&c, &packed[..24], back.as_mut_ptr().cast(), 2) });
        let expect: Vec<i32> = (0..40).map(|i| if [0, 3, 6, 9, 10, 13].contains(&i) { i } else { -1 }).collect();
        assert_eq!(back, expect);
        // SAFETY: as above; 3 elements' worth is more than the buffer's 2.
        assert!(!unsafe { unpack_received(&c, &[0u8; 48], back.as_mut_ptr().cast(), 2) });
    }
}
