//! The page pool: one pager object pinned for writing in the top tier for
//! the cache's lifetime, pages handed out from a free list with reference
//! counts (shared prefixes), and byte access that works in DDR (host
//! memory) and HBM (device copies through the copy's stream).

use std::sync::{Arc, OnceLock};

use memwall::gpu::cuda::{CudaStream, DriverError};

use super::shape::KvShape;
use crate::error::TierError;
use crate::pager::PinMutGuard;
use crate::tier::Tier;

/// The pool's storage and its page accounting.
pub(crate) struct Pool {
    guard: PinMutGuard,
    /// Free pages; popped from the end (so page 0 goes first).
    free: Vec<u32>,
    /// Block tables referencing each page.
    refs: Vec<u32>,
    /// The pool's own stream for its small token-sized copies (pool in
    /// HBM). Not the pager's copy stream: a write waits only for itself,
    /// not behind the MiB-sized expert prefetches queued there.
    stream: OnceLock<Arc<CudaStream>>,
}

fn cuda(during: String, e: DriverError) -> TierError {
    TierError::cuda(during.clone(), memwall::Error::driver(during, e))
}

impl Pool {
    /// A pool over the pinned copy `guard` (`shape.pool_bytes()` bytes).
    pub(crate) fn new(guard: PinMutGuard, shape: &KvShape) -> Self {
        let n = shape.num_pages;
        Pool { guard, free: (0..n as u32).rev().collect(), refs: vec![0; n], stream: OnceLock::new() }
    }

    /// The tier the pool is pinned in.
    pub(crate) fn tier(&self) -> Tier {
        self.guard.tier()
    }

    /// Free pages.
    pub(crate) fn free_pages(&self) -> usize {
        self.free.len()
    }

    /// Pages referenced by more than one block table.
    pub(crate) fn shared_pages(&self) -> usize {
        self.refs.iter().filter(|&&r| r > 1).count()
    }

    /// The reference count of `page`.
    pub(crate) fn refs(&self, page: u32) -> u32 {
        self.refs[page as usize]
    }

    /// `n` free pages, each with one reference; `None` (taking nothing)
    /// when fewer are free.
    pub(crate) fn alloc(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.free.len() {
            return None;
        }
        let pages = self.free.split_off(self.free.len() - n);
        let pages: Vec<u32> = pages.into_iter().rev().collect();
        for &p in &pages {
            self.refs[p as usize] = 1;
        }
        Some(pages)
    }

    /// One more block table references `page`.
    pub(crate) fn share(&mut self, page: u32) {
        self.refs[page as usize] += 1;
    }

    /// One block table fewer references `page`; it is free at zero.
    pub(crate) fn release(&mut self, page: u32) {
        let r = &mut self.refs[page as usize];
        debug_assert!(*r > 0, "page {page} released more often than referenced");
        *r = r.saturating_sub(1);
        if *r == 0 {
            self.free.push(page);
        }
    }

    /// The pool's bytes, when it is in host memory.
    pub(crate) fn host(&self) -> Option<&[u8]> {
        self.guard.bytes().ok()
    }

    /// The pinned copy (for device views).
    pub(crate) fn guard(&self) -> &PinMutGuard {
        &self.guard
    }

    /// Copies `src` into the pool at byte `offset`.
    pub(crate) fn write(&mut self, offset: usize, src: &[u8]) -> Result<(), TierError> {
        if let Ok(bytes) = self.guard.bytes_mut() {
            bytes[offset..offset + src.len()].copy_from_slice(src);
            return Ok(());
        }
        let during = || format!("writing {} bytes of the KV pool at offset {offset}", src.len());
        let stream = self.stream(during)?;
        let block = self.guard.device_mut()?;
        let mut view = block.slice_mut().slice_mut(offset..offset + src.len());
        stream.memcpy_htod(src, &mut view).map_err(|e| cuda(during(), e))?;
        stream.synchronize().map_err(|e| cuda(during(), e))
    }

    /// The pool's own stream (created on first use, in the pool's context;
    /// cudarc's per-allocation events order it against the pager's and the
    /// kernels' streams).
    fn stream(&self, during: impl Fn() -> String) -> Result<Arc<CudaStream>, TierError> {
        if let Some(s) = self.stream.get() {
            return Ok(s.clone());
        }
        let block = self.guard.device()?;
        let s = block.slice().stream().context().new_stream().map_err(|e| cuda(during(), e))?;
        Ok(self.stream.get_or_init(|| s).clone())
    }

    /// Copies pool bytes at `offset` into `dst`.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), TierError> {
        if let Ok(bytes) = self.guard.bytes() {
            dst.copy_from_slice(&bytes[offset..offset + dst.len()]);
            return Ok(());
        }
        let len = dst.len();
        let during = || format!("reading {len} bytes of the KV pool at offset {offset}");
        let stream = self.stream(during)?;
        let block = self.guard.device()?;
        let view = block.slice().slice(offset..offset + len);
        stream.memcpy_dtoh(&view, dst).map_err(|e| cuda(during(), e))?;
        stream.synchronize().map_err(|e| cuda(during(), e))
    }

    /// Copies the first `rows` tokens of page `from` to page `to`, every
    /// layer, K and V (copy-on-write of a shared block).
    pub(crate) fn copy_rows(&mut self, shape: &KvShape, from: u32, to: u32, rows: usize) -> Result<(), TierError> {
        let len = rows * shape.token_elems() * shape.elem_bytes();
        let mut staged = Vec::new();
        for layer in 0..shape.layers {
            for kv in 0..2 {
                let src = shape.page_offset(layer, kv, from as usize);
                let dst = shape.page_offset(layer, kv, to as usize);
                if let Ok(bytes) = self.guard.bytes_mut() {
                    bytes.copy_within(src..src + len, dst);
                } else {
                    staged.resize(len, 0);
                    self.read(src, &mut staged)?;
                    self.write(dst, &staged)?;
                }
            }
        }
        Ok(())
    }
}
