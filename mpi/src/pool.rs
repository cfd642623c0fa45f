//! Reusable host buffers for packed messages.
//!
//! A fresh large allocation costs page faults on every message; the pool
//! hands back buffers already touched. It is bounded (buffer count and
//! bytes), so long loops neither grow nor leak it.

use std::sync::{Mutex, PoisonError};

/// Most buffers kept.
pub const MAX_BUFFERS: usize = 32;
/// Most bytes kept.
pub const MAX_BYTES: usize = 256 << 20;

/// A bounded pool of byte buffers.
#[derive(Debug, Default)]
pub struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// A buffer of exactly [`PooledBuf::len`] usable bytes, back to its pool on drop.
#[derive(Debug)]
pub struct PooledBuf<'p> {
    buf: Vec<u8>,
    len: usize,
    pool: &'p Pool,
}

impl Pool {
    /// An empty pool.
    pub const fn new() -> Self {
        Pool { free: Mutex::new(Vec::new()) }
    }

    /// A buffer of `len` bytes (contents unspecified: zeroed or old data).
    pub fn get(&self, len: usize) -> PooledBuf<'_> {
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            // The smallest buffer that fits.
            let best = free.iter().enumerate().filter(|(_, b)| b.len() >= len).min_by_key(|(_, b)| b.len());
            best.map(|(i, _)| i).map(|i| free.swap_remove(i))
        };
        let buf = reused.unwrap_or_else(|| vec![0u8; len]);
        PooledBuf { buf, len, pool: self }
    }

    /// Bytes held by free buffers.
    pub fn held_bytes(&self) -> usize {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).iter().map(Vec::len).sum()
    }

    fn put(&self, buf: Vec<u8>) {
        if buf.len() > MAX_BYTES {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        free.push(buf);
        // Over the bounds: drop the smallest buffers first.
        let mut total: usize = free.iter().map(Vec::len).sum();
        while free.len() > MAX_BUFFERS || total > MAX_BYTES {
            let (i, _) = free.iter().enumerate().min_by_key(|(_, b)| b.len()).expect("not empty");
            total -= free.swap_remove(i).len();
        }
    }
}

impl PooledBuf<'_> {
    /// Usable bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no usable bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The usable bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The usable bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl Drop for PooledBuf<'_> {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds() {
        let pool = Pool::new();
        let a = pool.get(1000);
        let ptr = a.as_slice().as_ptr();
        assert_eq!(a.len(), 1000);
        drop(a);
        let b = pool.get(600);
        assert_eq!(b.as_slice().as_ptr(), ptr, "the freed buffer is reused");
        assert_eq!(b.len(), 600);
        drop(b);
        assert_eq!(pool.held_bytes(), 1000);
        let many: Vec<_> = (0..(MAX_BUFFERS + 10)).map(|_| pool.get(10)).collect();
        drop(many);
        assert!(pool.free.lock().unwrap().len() <= MAX_BUFFERS);
    }

    #[test]
    fn huge_buffers_are_not_kept() {
        let pool = Pool::new();
        drop(pool.get(MAX_BYTES + 1));
        assert_eq!(pool.held_bytes(), 0);
    }
}
