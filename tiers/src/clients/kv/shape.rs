//! The KV cache's shape and the pool's byte layout.
//!
//! The pool is one pager object: for each layer, the K cache then the V
//! cache, each `[num_pages, page_size, kv_heads, head_dim]` elements — the
//! layout [`memwall::attention::decode`] reads, so a layer's K and V are
//! two contiguous slices of the pool.

use memwall::dtype::Dtype;

use super::super::{ClientError, Result};

/// The KV cache's dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    /// Layers (each with its own K and V cache).
    pub layers: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head dimension (the decode kernel takes 64 and 128).
    pub head_dim: usize,
    /// Tokens per page (block).
    pub page_size: usize,
    /// Pages in the pool.
    pub num_pages: usize,
    /// Element type: f16 or bf16.
    pub dtype: Dtype,
}

impl KvShape {
    /// Checks the shape; the error names the value.
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [
            ("layers", self.layers),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("page_size", self.page_size),
            ("num_pages", self.num_pages),
        ] {
            if v == 0 {
                return Err(ClientError::invalid(what, 0, "must be at least 1"));
            }
        }
        if self.dtype == Dtype::F32 {
            return Err(ClientError::invalid("dtype", "F32", "the KV cache holds f16 or bf16"));
        }
        if i32::try_from(self.num_pages).is_err() {
            return Err(ClientError::invalid("num_pages", self.num_pages, "block tables hold i32 page indices"));
        }
        Ok(())
    }

    /// Bytes per element.
    pub fn elem_bytes(&self) -> usize {
        self.dtype.size() as usize
    }

    /// Elements of one token's K (or V) in one layer: `kv_heads x head_dim`.
    pub fn token_elems(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Bytes of one page of one layer's K (or V).
    pub fn page_bytes(&self) -> usize {
        self.page_size * self.token_elems() * self.elem_bytes()
    }

    /// Elements of one layer's K (or V) cache: what the decode kernel's
    /// `cache_len` is.
    pub fn layer_elems(&self) -> usize {
        self.num_pages * self.page_size * self.token_elems()
    }

    /// Bytes of the whole pool.
    pub fn pool_bytes(&self) -> usize {
        self.layers * 2 * self.layer_elems() * self.elem_bytes()
    }

    /// Bytes of one block (page) across every layer, K and V.
    pub fn block_bytes(&self) -> usize {
        self.layers * 2 * self.page_bytes()
    }

    /// Byte offset in the pool of `layer`'s K (`kv` 0) or V (`kv` 1) cache.
    pub fn cache_offset(&self, layer: usize, kv: usize) -> usize {
        (2 * layer + kv) * self.layer_elems() * self.elem_bytes()
    }

    /// Byte offset in the pool of `page` in `layer`'s K or V cache.
    pub(crate) fn page_offset(&self, layer: usize, kv: usize, page: usize) -> usize {
        self.cache_offset(layer, kv) + page * self.page_bytes()
    }
}
