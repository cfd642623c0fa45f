//! Token-level operations of [`KvCache`]: append, overwrite and read one
//! token, with copy-on-write of shared blocks.

use memwall::dtype::Element;

use super::super::{ClientError, Result};
use super::cache::{KvCache, SeqId};

impl KvCache {
    fn check_token<T: Element>(&self, what: &'static str, xs: &[T], expected: usize) -> Result<()> {
        if T::DTYPE != self.cfg.shape.dtype {
            return Err(ClientError::invalid(
                "element type",
                format!("{:?}", T::DTYPE),
                format!("the cache holds {:?}", self.cfg.shape.dtype),
            ));
        }
        if xs.len() != expected {
            return Err(ClientError::Length { what, got: xs.len(), expected });
        }
        Ok(())
    }

    fn pool_full(&self, seq: SeqId, needed: usize) -> ClientError {
        ClientError::PoolFull { seq: seq.0, needed, free: self.pool.free_pages(), pages: self.cfg.shape.num_pages }
    }

    /// Makes block `b` of the sequence private (copy-on-write when another
    /// table shares its page) before a write; `rows` tokens are copied.
    fn make_private(&mut self, seq: SeqId, b: usize, rows: usize) -> Result<()> {
        let page = self.block_table(seq)?[b] as u32;
        if self.pool.refs(page) <= 1 {
            return Ok(());
        }
        let fresh = self.pool.alloc(1).ok_or_else(|| self.pool_full(seq, 1))?[0];
        if let Err(e) = self.pool.copy_rows(&self.cfg.shape, page, fresh, rows) {
            self.pool.release(fresh);
            return Err(e.into());
        }
        self.pool.release(page);
        self.table_mut(seq)?.0[b] = fresh as i32;
        self.stats.cow_copies += 1;
        Ok(())
    }

    /// Writes one token's K and V (every layer; `v` likewise) at `pos`.
    fn put_token<T: Element>(&mut self, page: u32, row: usize, layer: Option<usize>, k: &[T], v: &[T]) -> Result<()> {
        let shape = self.cfg.shape;
        let tb = shape.token_elems() * shape.elem_bytes();
        let layers = match layer {
            Some(l) => l..l + 1,
            None => 0..shape.layers,
        };
        let (kb, vb): (&[u8], &[u8]) = (bytemuck::cast_slice(k), bytemuck::cast_slice(v));
        for (i, l) in layers.enumerate() {
            for (kv, src) in [(0, kb), (1, vb)] {
                let at = shape.page_offset(l, kv, page as usize) + row * tb;
                self.pool.write(at, &src[i * tb..(i + 1) * tb])?;
            }
        }
        Ok(())
    }

    /// Appends one token: `k` and `v` hold its keys and values for every
    /// layer (`layers x kv_heads x head_dim` each, layer-major). Allocates
    /// a page when the last block is full, and copies the last block first
    /// when it is shared with a fork (copy-on-write). Returns the token's
    /// position. On error the sequence is unchanged.
    pub fn append<T: Element>(&mut self, seq: SeqId, k: &[T], v: &[T]) -> Result<usize> {
        let shape = self.cfg.shape;
        let n = shape.layers * shape.token_elems();
        self.check_token("k (layers x kv_heads x head_dim)", k, n)?;
        self.check_token("v (layers x kv_heads x head_dim)", v, n)?;
        let (_, len) = self.table_mut(seq)?;
        let row = len % shape.page_size;
        let fresh = if row == 0 {
            let page = self.pool.alloc(1).ok_or_else(|| self.pool_full(seq, 1))?[0];
            self.table_mut(seq)?.0.push(page as i32);
            Some(page)
        } else {
            self.make_private(seq, len / shape.page_size, row)?;
            None
        };
        let page = self.block_table(seq)?[len / shape.page_size] as u32;
        if let Err(e) = self.put_token(page, row, None, k, v) {
            if let Some(p) = fresh {
                self.table_mut(seq)?.0.pop();
                self.pool.release(p);
            }
            return Err(e);
        }
        if let Some(s) = self.seqs.get_mut(&seq.0) {
            s.len += 1;
        }
        Ok(len)
    }

    /// Overwrites the token at `pos` in `layer` (`k`, `v`: `kv_heads x
    /// head_dim` each), copying its block first when shared.
    pub fn write<T: Element>(&mut self, seq: SeqId, layer: usize, pos: usize, k: &[T], v: &[T]) -> Result<()> {
        let shape = self.cfg.shape;
        self.check_layer(layer)?;
        self.check_token("k (kv_heads x head_dim)", k, shape.token_elems())?;
        self.check_token("v (kv_heads x head_dim)", v, shape.token_elems())?;
        let len = self.check_pos(seq, pos)?;
        let b = pos / shape.page_size;
        self.make_private(seq, b, (len - b * shape.page_size).min(shape.page_size))?;
        let page = self.block_table(seq)?[b] as u32;
        self.put_token(page, pos % shape.page_size, Some(layer), k, v)
    }

    /// The keys and values of the token at `pos` in `layer`.
    pub fn read<T: Element>(&self, seq: SeqId, layer: usize, pos: usize) -> Result<(Vec<T>, Vec<T>)> {
        let shape = self.cfg.shape;
        self.check_layer(layer)?;
        self.check_pos(seq, pos)?;
        let page = self.block_table(seq)?[pos / shape.page_size] as usize;
        let n = shape.token_elems();
        let mut out = [vec![T::from_f32(0.0); n], vec![T::from_f32(0.0); n]];
        for (kv, dst) in out.iter_mut().enumerate() {
            let at = shape.page_offset(layer, kv, page) + (pos % shape.page_size) * n * shape.elem_bytes();
            self.pool.read(at, bytemuck::cast_slice_mut(dst))?;
        }
        let [k, v] = out;
        Ok((k, v))
    }

    pub(super) fn check_layer(&self, layer: usize) -> Result<()> {
        if layer >= self.cfg.shape.layers {
            return Err(ClientError::invalid(
                "layer",
                layer,
                format!("the cache has {} layers", self.cfg.shape.layers),
            ));
        }
        Ok(())
    }

    /// The sequence's length, checking that `pos` is inside it and that it
    /// is in the pool.
    fn check_pos(&self, seq: SeqId, pos: usize) -> Result<usize> {
        let len = self.len(seq)?;
        self.block_table(seq)?;
        if pos >= len {
            return Err(ClientError::Position { seq: seq.0, pos, len });
        }
        Ok(len)
    }
}
