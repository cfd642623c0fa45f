//! Whole-sequence swap: a sequence's blocks leave the pool as groups of
//! consecutive blocks, one pager object per group (FastSwitch's lesson:
//! block-by-block swaps waste I/O), written to DDR or NVMe in parallel on
//! the pager's prefetch workers, and come back the same way.
//!
//! A group object holds, for each layer, the K pages of its blocks in
//! order, then the V pages.

use std::time::Instant;

use super::super::{ClientError, Result};
use super::cache::{Group, KvCache, Place, Seq, SeqId};
use super::stats::SwapReport;
use crate::error::TierError;
use crate::object::{ObjectClass, ObjectId, ObjectSpec};
use crate::pager::Ticket;
use crate::tier::Tier;

/// Byte offset in a group object of `n` blocks of block `b`'s page of
/// `layer`'s K (`kv` 0) or V (`kv` 1).
fn group_offset(page_bytes: usize, n: usize, layer: usize, kv: usize, b: usize) -> usize {
    ((2 * layer + kv) * n + b) * page_bytes
}

/// Waits for every ticket; the first error.
fn wait_all(tickets: Vec<Ticket>) -> Result<(), TierError> {
    let mut first = None;
    for t in tickets {
        if let Err(e) = t.wait() {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

impl KvCache {
    /// Moves the sequence's blocks out of the pool to `to` (DDR or NVMe),
    /// in groups of `swap_group_blocks` consecutive blocks, one pager
    /// object each, and frees its pages (shared pages stay for the other
    /// sequences that use them; after a swap-in the sequence has private
    /// copies). On error the sequence is still in the pool, unchanged, and
    /// no group object is left behind.
    pub fn swap_out(&mut self, seq: SeqId, to: Tier) -> Result<SwapReport> {
        if to == Tier::Hbm {
            return Err(ClientError::invalid("swap tier", to, "swap out to DDR or NVMe"));
        }
        let start = Instant::now();
        let table = self.block_table(seq)?.to_vec();
        let len = self.len(seq)?;
        let mut groups = Vec::new();
        let written = self.write_groups(&table, to, &mut groups);
        if let Err(source) = written {
            for g in &groups {
                let _ = self.pager.remove(g.id);
            }
            return Err(ClientError::Swap { seq: seq.0, direction: "out", tier: to, source: Box::new(source) });
        }
        for &p in &table {
            self.pool.release(p as u32);
        }
        let report = SwapReport {
            blocks: table.len(),
            groups: groups.len(),
            bytes: (table.len() * self.cfg.shape.block_bytes()) as u64,
            elapsed: start.elapsed(),
        };
        if let Some(s) = self.seqs.get_mut(&seq.0) {
            *s = Seq { len, place: Place::Swapped(groups, to) };
        }
        self.stats.swaps_out += 1;
        self.stats.bytes_out += report.bytes;
        self.stats.time_out += report.elapsed;
        self.stats.group_objects += report.groups as u64;
        Ok(report)
    }

    /// Registers and fills one object per group (pushed to `groups` as
    /// made), then writes them to NVMe when `to` is NVMe.
    fn write_groups(&mut self, table: &[i32], to: Tier, groups: &mut Vec<Group>) -> Result<(), TierError> {
        let shape = self.cfg.shape;
        let pb = shape.page_bytes();
        for chunk in table.chunks(self.cfg.swap_group_blocks) {
            let id = ObjectId(self.next_object);
            self.next_object += 1;
            let n = chunk.len();
            self.pager.register(ObjectSpec::new(id.0, n * shape.block_bytes(), ObjectClass::KvBlock))?;
            groups.push(Group { id, blocks: n });
            let mut pin = self.pager.pin_mut(id, Tier::Ddr)?;
            let dst = pin.bytes_mut()?;
            for layer in 0..shape.layers {
                for kv in 0..2 {
                    for (b, &page) in chunk.iter().enumerate() {
                        let at = group_offset(pb, n, layer, kv, b);
                        self.pool.read(shape.page_offset(layer, kv, page as usize), &mut dst[at..at + pb])?;
                    }
                }
            }
        }
        if to == Tier::Nvme {
            let tickets = groups.iter().map(|g| self.pager.prefetch(g.id, Tier::Nvme)).collect();
            wait_all(tickets)?;
            for g in groups.iter() {
                // Clean now (the NVMe copy is current): no write.
                self.pager.evict(g.id, Tier::Ddr)?;
            }
        }
        Ok(())
    }

    /// Brings a swapped-out sequence back into the pool: allocates its
    /// pages (all or nothing), reads its groups (in parallel on the pager's
    /// prefetch workers) and copies them in, then drops the group objects.
    /// On error the sequence stays swapped out with its groups intact, and
    /// the pages are returned.
    pub fn swap_in(&mut self, seq: SeqId) -> Result<SwapReport> {
        let start = Instant::now();
        let (groups, from, len) = match &self.seq(seq)?.place {
            Place::Swapped(g, tier) => (g.clone(), *tier, self.seq(seq)?.len),
            Place::Pool(_) => return Err(ClientError::NotSwappedOut { seq: seq.0 }),
        };
        let blocks: usize = groups.iter().map(|g| g.blocks).sum();
        let pages = self.pool.alloc(blocks).ok_or_else(|| ClientError::PoolFull {
            seq: seq.0,
            needed: blocks,
            free: self.pool.free_pages(),
            pages: self.cfg.shape.num_pages,
        })?;
        if let Err(source) = self.read_groups(&groups, &pages) {
            for &p in &pages {
                self.pool.release(p);
            }
            return Err(ClientError::Swap { seq: seq.0, direction: "in", tier: from, source: Box::new(source) });
        }
        for g in &groups {
            let _ = self.pager.remove(g.id);
        }
        let table = pages.iter().map(|&p| p as i32).collect();
        if let Some(s) = self.seqs.get_mut(&seq.0) {
            *s = Seq { len, place: Place::Pool(table) };
        }
        let report = SwapReport {
            blocks,
            groups: groups.len(),
            bytes: (blocks * self.cfg.shape.block_bytes()) as u64,
            elapsed: start.elapsed(),
        };
        self.stats.swaps_in += 1;
        self.stats.bytes_in += report.bytes;
        self.stats.time_in += report.elapsed;
        Ok(report)
    }

    /// Reads every group into `pages` (in block order).
    fn read_groups(&mut self, groups: &[Group], pages: &[u32]) -> Result<(), TierError> {
        let shape = self.cfg.shape;
        let pb = shape.page_bytes();
        let mut tickets: Vec<Option<Ticket>> =
            groups.iter().map(|g| Some(self.pager.prefetch(g.id, Tier::Ddr))).collect();
        let mut result = Ok(());
        let mut first_page = 0;
        for (g, ticket) in groups.iter().zip(tickets.iter_mut()) {
            let chunk = &pages[first_page..first_page + g.blocks];
            first_page += g.blocks;
            let copied = ticket.take().map_or(Ok(()), Ticket::wait).and_then(|()| {
                let pin = self.pager.pin(g.id, Tier::Ddr)?;
                let src = pin.bytes()?;
                for layer in 0..shape.layers {
                    for kv in 0..2 {
                        for (b, &page) in chunk.iter().enumerate() {
                            let at = group_offset(pb, g.blocks, layer, kv, b);
                            self.pool.write(shape.page_offset(layer, kv, page as usize), &src[at..at + pb])?;
                        }
                    }
                }
                Ok(())
            });
            if let Err(e) = copied {
                result = Err(e);
                break;
            }
        }
        // Nothing may stay in flight after an error.
        let rest: Vec<Ticket> = tickets.into_iter().flatten().collect();
        let _ = wait_all(rest);
        result
    }
}
