//! [`KvCache`]: sequences, their block tables, forks, frees and decode
//! views. Token reads and writes are in `tokens.rs`, swapping in `swap.rs`.

use std::collections::BTreeMap;
use std::fmt;

use memwall::dtype::Element;

use super::super::{top_tier, ClientError, Result, KV_ID_BASE};
use super::pool::Pool;
use super::shape::KvShape;
use super::stats::{BatchTables, KvStats, PoolStats};
use crate::error::TierError;
use crate::hbm::DeviceBlock;
use crate::object::{ObjectClass, ObjectId, ObjectSpec};
use crate::pager::Pager;
use crate::tier::Tier;

/// A sequence in a [`KvCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqId(pub u64);

impl fmt::Display for SeqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a [`KvCache`] is laid out and placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvConfig {
    /// The dimensions.
    pub shape: KvShape,
    /// The pool's object id; swap groups take the ids after it.
    pub id_base: u64,
    /// The pool's tier; `None`: the pager's top tier ([`top_tier`]).
    pub tier: Option<Tier>,
    /// Consecutive blocks per swap object: a swap moves a sequence in
    /// groups of this many blocks, one pager object (and one large I/O)
    /// each, not block by block.
    pub swap_group_blocks: usize,
}

impl KvConfig {
    /// `shape` with ids from [`KV_ID_BASE`], the pool in the top tier, swap
    /// groups of 16 blocks.
    pub fn new(shape: KvShape) -> Self {
        KvConfig { shape, id_base: KV_ID_BASE, tier: None, swap_group_blocks: 16 }
    }
}

/// A swapped-out group of consecutive blocks: one pager object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Group {
    pub(crate) id: ObjectId,
    pub(crate) blocks: usize,
}

/// Where a sequence's blocks are.
#[derive(Debug)]
pub(crate) enum Place {
    /// In the pool: the block table.
    Pool(Vec<i32>),
    /// Swapped out as groups of blocks, to this tier.
    Swapped(Vec<Group>, Tier),
}

#[derive(Debug)]
pub(crate) struct Seq {
    pub(crate) len: usize,
    pub(crate) place: Place,
}

/// A paged KV cache over a pager (see the module docs). The pool stays
/// pinned while the cache lives, and the cache stays on the thread that
/// made it (pin guards do).
pub struct KvCache {
    pub(crate) pager: Pager,
    pub(crate) cfg: KvConfig,
    pub(crate) pool: Pool,
    pub(crate) seqs: BTreeMap<u64, Seq>,
    next_seq: u64,
    pub(crate) next_object: u64,
    pub(crate) stats: KvStats,
}

impl fmt::Debug for KvCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvCache")
            .field("cfg", &self.cfg)
            .field("sequences", &self.seqs.len())
            .field("pool", &self.pool_stats())
            .finish_non_exhaustive()
    }
}

impl KvCache {
    /// Registers the pool object and pins it in its tier for writing.
    /// Errors: a bad shape, a tier that cannot hold the pool, the id taken.
    pub fn new(pager: Pager, cfg: KvConfig) -> Result<Self> {
        cfg.shape.validate()?;
        if cfg.swap_group_blocks == 0 {
            return Err(ClientError::invalid("swap_group_blocks", 0, "must be at least 1"));
        }
        let tier = cfg.tier.unwrap_or_else(|| top_tier(&pager));
        if tier == Tier::Nvme {
            return Err(ClientError::invalid("tier", tier, "the pool lives in HBM or DDR"));
        }
        let spec = ObjectSpec::new(cfg.id_base, cfg.shape.pool_bytes(), ObjectClass::KvBlock).with_priority(u8::MAX);
        pager.register(spec)?;
        let guard = match pager.pin_mut(spec.id, tier) {
            Ok(g) => g,
            Err(e) => {
                let _ = pager.remove(spec.id);
                return Err(e.into());
            }
        };
        let pool = Pool::new(guard, &cfg.shape);
        Ok(KvCache {
            pager,
            cfg,
            pool,
            seqs: BTreeMap::new(),
            next_seq: 0,
            next_object: cfg.id_base + 1,
            stats: KvStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &KvConfig {
        &self.cfg
    }

    /// The shape.
    pub fn shape(&self) -> &KvShape {
        &self.cfg.shape
    }

    /// The pager.
    pub fn pager(&self) -> &Pager {
        &self.pager
    }

    /// The pool's tier.
    pub fn tier(&self) -> Tier {
        self.pool.tier()
    }

    /// A new, empty sequence (in the pool).
    pub fn add_sequence(&mut self) -> SeqId {
        let id = self.next_seq;
        self.next_seq += 1;
        self.seqs.insert(id, Seq { len: 0, place: Place::Pool(Vec::new()) });
        SeqId(id)
    }

    /// Every sequence, in id order.
    pub fn sequences(&self) -> Vec<SeqId> {
        self.seqs.keys().map(|&s| SeqId(s)).collect()
    }

    pub(crate) fn seq(&self, seq: SeqId) -> Result<&Seq> {
        self.seqs.get(&seq.0).ok_or(ClientError::UnknownSequence { seq: seq.0 })
    }

    /// Tokens in the sequence.
    pub fn len(&self, seq: SeqId) -> Result<usize> {
        Ok(self.seq(seq)?.len)
    }

    /// Where the sequence is swapped out to, or `None` when it is in the
    /// pool.
    pub fn swapped(&self, seq: SeqId) -> Result<Option<Tier>> {
        Ok(match self.seq(seq)?.place {
            Place::Pool(_) => None,
            Place::Swapped(_, tier) => Some(tier),
        })
    }

    /// The sequence's block table: page indices in the pool, one per
    /// `page_size` tokens. Fails when it is swapped out.
    pub fn block_table(&self, seq: SeqId) -> Result<&[i32]> {
        match &self.seq(seq)?.place {
            Place::Pool(t) => Ok(t),
            Place::Swapped(_, tier) => Err(ClientError::SwappedOut { seq: seq.0, tier: *tier }),
        }
    }

    pub(super) fn table_mut(&mut self, seq: SeqId) -> Result<(&mut Vec<i32>, usize)> {
        let s = self.seqs.get_mut(&seq.0).ok_or(ClientError::UnknownSequence { seq: seq.0 })?;
        match &mut s.place {
            Place::Pool(t) => Ok((t, s.len)),
            Place::Swapped(_, tier) => Err(ClientError::SwappedOut { seq: seq.0, tier: *tier }),
        }
    }

    /// A new sequence sharing every block of `seq` (which must be in the
    /// pool): a shared prefix. Writes to a shared block copy it first.
    pub fn fork(&mut self, seq: SeqId) -> Result<SeqId> {
        let (table, len) = {
            let s = self.seq(seq)?;
            (self.block_table(seq)?.to_vec(), s.len)
        };
        for &p in &table {
            self.pool.share(p as u32);
        }
        let id = self.add_sequence();
        if let Some(s) = self.seqs.get_mut(&id.0) {
            *s = Seq { len, place: Place::Pool(table) };
        }
        Ok(id)
    }

    /// Drops the sequence: its pages return to the pool (when no fork
    /// shares them) or its swapped-out groups are removed from the pager.
    pub fn free(&mut self, seq: SeqId) -> Result<()> {
        let s = self.seqs.remove(&seq.0).ok_or(ClientError::UnknownSequence { seq: seq.0 })?;
        match s.place {
            Place::Pool(table) => table.iter().for_each(|&p| self.pool.release(p as u32)),
            Place::Swapped(groups, _) => {
                for g in groups {
                    // Not pinned (the cache pins groups only inside a
                    // swap), so removal does not fail.
                    let _ = self.pager.remove(g.id);
                }
            }
        }
        Ok(())
    }

    /// Block tables and lengths of `seqs` (all in the pool) for one decode
    /// step.
    pub fn batch(&self, seqs: &[SeqId]) -> Result<BatchTables> {
        let tables: Vec<&[i32]> = seqs.iter().map(|&s| self.block_table(s)).collect::<Result<_>>()?;
        let max_pages = tables.iter().map(|t| t.len()).max().unwrap_or(0).max(1);
        let mut block_tables = vec![0i32; seqs.len() * max_pages];
        let mut seq_lens = Vec::with_capacity(seqs.len());
        for (b, (t, &s)) in tables.iter().zip(seqs).enumerate() {
            block_tables[b * max_pages..b * max_pages + t.len()].copy_from_slice(t);
            let len = self.len(s)?;
            seq_lens.push(i32::try_from(len).map_err(|_| ClientError::invalid("sequence length", len, "exceeds i32"))?);
        }
        Ok(BatchTables { block_tables, seq_lens, max_pages: max_pages as u32 })
    }

    fn cache_view<T: Element>(&self, layer: usize, kv: usize) -> Result<&[T]> {
        self.check_layer(layer)?;
        let shape = self.cfg.shape;
        if T::DTYPE != shape.dtype {
            return Err(ClientError::invalid(
                "element type",
                format!("{:?}", T::DTYPE),
                format!("the cache holds {:?}", shape.dtype),
            ));
        }
        let bytes = self.pool.host().ok_or(TierError::NotViewable {
            id: ObjectId(self.cfg.id_base),
            tier: self.pool.tier(),
            what: "a host view of the KV pool (use pool_device)",
        })?;
        let at = shape.cache_offset(layer, kv);
        Ok(bytemuck::cast_slice(&bytes[at..at + shape.layer_elems() * shape.elem_bytes()]))
    }

    /// `layer`'s K cache, `[num_pages, page_size, kv_heads, head_dim]`, for
    /// [`memwall::attention::decode`] (pool in DDR).
    pub fn k_cache<T: Element>(&self, layer: usize) -> Result<&[T]> {
        self.cache_view(layer, 0)
    }

    /// `layer`'s V cache, like [`KvCache::k_cache`].
    pub fn v_cache<T: Element>(&self, layer: usize) -> Result<&[T]> {
        self.cache_view(layer, 1)
    }

    /// The pool's device memory (pool in HBM): `layer`'s K and V caches
    /// start at [`KvShape::cache_offset`] bytes, for
    /// [`memwall::attention::decode_gpu`].
    pub fn pool_device(&self) -> Result<&DeviceBlock> {
        Ok(self.pool.guard().device()?)
    }

    /// The pool's occupancy.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats { pages: self.cfg.shape.num_pages, free: self.pool.free_pages(), shared: self.pool.shared_pages() }
    }

    /// Swap and copy-on-write counters.
    pub fn stats(&self) -> KvStats {
        self.stats
    }
}
