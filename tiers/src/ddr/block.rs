//! One host buffer: page-aligned, zero-filled, padded to whole pages so
//! O_DIRECT can read and write it in place.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use memwall::gpu::{Gpu, PinnedBuffer, PinnedKind};

use crate::error::{Result, TierError};
use crate::nvme::Registration;

/// Alignment and padding granule of host blocks (one page; also O_DIRECT's).
pub const HOST_ALIGN: usize = 4096;

/// Who owns the memory of a [`HostBlock`].
enum Owner {
    /// `std::alloc` with [`HOST_ALIGN`] alignment; freed on drop.
    Aligned(Layout),
    /// cuMemHostAlloc through memwall; freed when the buffer drops.
    Pinned { _buffer: PinnedBuffer<u8> },
}

/// A zero-initialised host buffer of `len` bytes, allocated as `padded_len`
/// (whole pages) and page-aligned.
pub struct HostBlock {
    ptr: NonNull<u8>,
    len: usize,
    padded: usize,
    owner: Owner,
    /// The io_uring slot the NVMe tier registered this block in, if any.
    registration: OnceLock<Registration>,
}

// SAFETY: a HostBlock owns its allocation exclusively (like a Box<[u8]>);
// the raw pointer is never shared outside borrows of the block, and the
// pinned owner is itself Send + Sync (cudarc's PinnedHostSlice).
unsafe impl Send for HostBlock {}
// SAFETY: shared access only hands out `&[u8]`; mutation needs `&mut self`.
unsafe impl Sync for HostBlock {}

impl std::fmt::Debug for HostBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBlock").field("len", &self.len).field("pinned", &self.is_pinned()).finish()
    }
}

/// `len` rounded up to whole [`HOST_ALIGN`] pages.
pub fn padded_len(len: usize) -> usize {
    len.div_ceil(HOST_ALIGN).saturating_mul(HOST_ALIGN)
}

impl HostBlock {
    /// A zeroed page-aligned block of `len` bytes (`len` > 0).
    pub fn new(len: usize) -> Result<Self> {
        let padded = padded_len(len.max(1));
        let layout = Layout::from_size_align(padded, HOST_ALIGN)
            .map_err(|_| TierError::HostAlloc { bytes: len, what: "page-aligned" })?;
        // SAFETY: the layout has a non-zero size (padded >= HOST_ALIGN).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(TierError::HostAlloc { bytes: len, what: "page-aligned" })?;
        Ok(HostBlock { ptr, len, padded, owner: Owner::Aligned(layout), registration: OnceLock::new() })
    }

    /// A zeroed block of page-locked memory on `gpu`'s context (cached, so
    /// the host reads it fast too).
    pub fn pinned(gpu: &Arc<Gpu>, len: usize) -> Result<Self> {
        let padded = padded_len(len.max(1));
        let mut buf = gpu
            .alloc_pinned::<u8>(padded, PinnedKind::Cached)
            .map_err(|e| TierError::cuda(format!("allocating {padded} bytes of pinned host memory"), e))?;
        let raw = buf
            .host_slice_mut()
            .as_mut_ptr()
            .map_err(|e| TierError::cuda("pinned buffer pointer", memwall::Error::driver("as_mut_ptr", e)))?;
        let ptr = NonNull::new(raw).ok_or(TierError::HostAlloc { bytes: len, what: "pinned" })?;
        if ptr.as_ptr() as usize % HOST_ALIGN != 0 {
            return Err(TierError::HostAlloc { bytes: len, what: "pinned (page-aligned)" });
        }
        Ok(HostBlock { ptr, len, padded, owner: Owner::Pinned { _buffer: buf }, registration: OnceLock::new() })
    }

    /// The object's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `padded >= len` initialised bytes for
        // as long as `self` lives, and `&self` forbids mutation meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The object's bytes, mutable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// All the pages, padding included (what NVMe I/O moves).
    pub fn padded(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `padded` initialised bytes while `self`
        // lives; `&self` forbids mutation.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.padded) }
    }

    /// All the pages, mutable. Callers keep the padding zero.
    pub fn padded_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `padded`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.padded) }
    }

    /// The object's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the object is empty (never, for blocks the pager makes).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated: `len` rounded up to whole pages.
    pub fn padded_len(&self) -> usize {
        self.padded
    }

    /// Whether the memory is page-locked CUDA host memory.
    pub fn is_pinned(&self) -> bool {
        matches!(self.owner, Owner::Pinned { .. })
    }

    /// The block's io_uring registration, if it has one.
    pub(crate) fn registration(&self) -> Option<&Registration> {
        self.registration.get()
    }

    /// Records the block's io_uring registration (once).
    pub(crate) fn set_registration(&self, r: Registration) -> Result<(), Registration> {
        self.registration.set(r)
    }

    /// Sets the object's size to `len` bytes, within the same pages.
    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.padded && padded_len(len) == self.padded);
        self.len = len.min(self.padded);
    }

    /// Zeroes the padding past `len` (after something wrote whole pages).
    pub fn clear_padding(&mut self) {
        let len = self.len;
        self.padded_mut()[len..].fill(0);
    }
}

impl Drop for HostBlock {
    fn drop(&mut self) {
        // Unregister from io_uring before the memory goes.
        drop(self.registration.take());
        if let Owner::Aligned(layout) = self.owner {
            // SAFETY: `ptr` came from `alloc_zeroed(layout)` in `new` and is
            // freed exactly once, here.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
        // A pinned owner frees itself when dropped after this.
    }
}
