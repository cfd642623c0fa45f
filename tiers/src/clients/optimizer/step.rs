//! [`OptimizerOffload::step`]: the pipelined pass over the partitions,
//! then the commit of the new generation.

use std::collections::VecDeque;
use std::time::Instant;

use super::super::{ClientError, Result};
use super::adamw::step_partition;
use super::manifest::{sync_folder, PartRecord};
use super::offload::{OptimizerOffload, StepReport, READ_AHEAD, WRITES_IN_FLIGHT};
use crate::error::TierError;
use crate::pager::Ticket;
use crate::tier::Tier;

impl OptimizerOffload {
    /// One AdamW step with `grads` (one per parameter), streamed over the
    /// partitions: partitions `i + 1` and `i + 2` are read into DDR and
    /// partition `i - 1` written to NVMe while `i` is computed on the step's
    /// threads.
    /// The new state goes to fresh objects (the other generation); when
    /// every write is durable the manifest is committed and the old
    /// generation dropped. `params` receives the new master weights.
    ///
    /// On error nothing changed: the committed state is the previous
    /// step's, in memory and on disk, and the step can be retried. The one
    /// exception is a failed fsync of the folder after the new manifest was
    /// renamed into place ([`ClientError::Io`] with op `fsync folder`): the
    /// step is then taken (see [`OptimizerOffload::steps`]), but the rename
    /// may not survive a crash.
    pub fn step(&mut self, grads: &[f32], params: &mut [f32]) -> Result<StepReport> {
        let n = self.len();
        if grads.len() != n {
            return Err(ClientError::Length { what: "grads", got: grads.len(), expected: n });
        }
        if params.len() != n {
            return Err(ClientError::Length { what: "params", got: params.len(), expected: n });
        }
        let start = Instant::now();
        let (old, new) = (self.manifest.generation, self.manifest.generation + 1);
        let step = self.manifest.step + 1;
        let mut report = StepReport { step, state_bytes: self.state_bytes(), ..StepReport::default() };
        let outcome = (0..self.partitions())
            .try_for_each(|i| self.register(new, i, step).map(drop))
            .and_then(|()| self.stream(old, new, step, grads, params, &mut report))
            .and_then(|crcs| {
                let t = Instant::now();
                let r = self.write_generation(new, step, crcs);
                report.commit = t.elapsed();
                r
            });
        match outcome {
            Ok(unsynced) => {
                for i in 0..self.partitions() {
                    // Unpinned and idle: removal cannot fail; if it did, the
                    // object would only waste space.
                    let _ = self.pager.remove(self.id(old, i));
                }
                report.elapsed = start.elapsed();
                // The step is committed (the new manifest is in place); a
                // failed fsync of the folder is still reported.
                unsynced.map_or(Ok(report), Err)
            }
            Err(e) => {
                for i in 0..self.partitions() {
                    let _ = self.pager.remove(self.id(new, i));
                }
                Err(e)
            }
        }
    }

    /// Writes generation `generation`'s objects to NVMe (those not there),
    /// syncs, and commits the manifest for `step`. `Err`: nothing changed
    /// (the old manifest is in place). `Ok(Some(e))`: the new manifest was
    /// renamed into place and the offload switched to it, but the fsync of
    /// the folder failed, so the rename may not survive a crash.
    pub(super) fn write_generation(
        &mut self,
        generation: u64,
        step: u64,
        crcs: Vec<u32>,
    ) -> Result<Option<ClientError>> {
        let tickets: Vec<Ticket> =
            (0..self.partitions()).map(|i| self.pager.prefetch(self.id(generation, i), Tier::Nvme)).collect();
        self.wait_writes(tickets.into_iter().enumerate().collect(), step)?;
        self.pager.sync()?;
        let mut parts = Vec::with_capacity(crcs.len());
        for (i, crc) in crcs.into_iter().enumerate() {
            let extent =
                self.pager.nvme_extent(self.id(generation, i)).map_err(|source| self.part_err(i, step, source))?;
            let extent = extent
                .ok_or_else(|| self.part_err(i, step, TierError::UnknownObject { id: self.id(generation, i) }))?;
            parts.push(PartRecord { extent, crc });
        }
        let mut next = self.manifest.clone();
        next.step = step;
        next.generation = generation;
        next.parts = parts;
        next.write_and_rename(&self.dir)?;
        self.manifest = next;
        Ok(sync_folder(&self.dir).err())
    }

    /// Waits for every ticket (all of them, even after an error) and
    /// returns the first error, naming its partition.
    pub(super) fn wait_writes(&self, tickets: Vec<(usize, Ticket)>, step: u64) -> Result<()> {
        let mut first = None;
        for (i, t) in tickets {
            if let Err(source) = t.wait() {
                first.get_or_insert(self.part_err(i, step, source));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The pipelined pass over the partitions; returns each new
    /// partition's checksum. Every ticket is waited for before returning.
    pub(super) fn stream(
        &self,
        old: u64,
        new: u64,
        step: u64,
        grads: &[f32],
        params: &mut [f32],
        report: &mut StepReport,
    ) -> Result<Vec<u32>> {
        let coeffs = self.manifest.adamw.coefficients(step);
        let parts = self.partitions();
        let mut reads: VecDeque<(usize, Ticket)> = VecDeque::new();
        let mut writes: VecDeque<(usize, Ticket)> = VecDeque::new();
        let mut crcs = Vec::with_capacity(parts);
        for j in 0..READ_AHEAD.min(parts) {
            reads.push_back((j, self.pager.prefetch(self.id(old, j), Tier::Ddr)));
        }
        let result = (|| -> Result<()> {
            for i in 0..parts {
                let t = Instant::now();
                if let Some((_, ticket)) = reads.pop_front() {
                    ticket.wait().map_err(|source| self.part_err(i, step, source))?;
                }
                if i + READ_AHEAD < parts {
                    let j = i + READ_AHEAD;
                    reads.push_back((j, self.pager.prefetch(self.id(old, j), Tier::Ddr)));
                }
                let src =
                    self.pager.pin(self.id(old, i), Tier::Ddr).map_err(|source| self.part_err(i, step, source))?;
                let mut dst =
                    self.pager.pin_mut(self.id(new, i), Tier::Ddr).map_err(|source| self.part_err(i, step, source))?;
                report.read_wait += t.elapsed();
                let t = Instant::now();
                let range = self.range(i);
                let src_state = src.view::<f32>().map_err(|source| self.part_err(i, step, source))?;
                let dst_state = dst.view_mut::<f32>().map_err(|source| self.part_err(i, step, source))?;
                let crc = step_partition(
                    &coeffs,
                    src_state,
                    dst_state,
                    &grads[range.clone()],
                    &mut params[range],
                    self.threads,
                );
                crcs.push(crc.finish());
                report.compute += t.elapsed();
                drop((src, dst));
                writes.push_back((i, self.pager.prefetch(self.id(new, i), Tier::Nvme)));
                if writes.len() > WRITES_IN_FLIGHT {
                    let t = Instant::now();
                    let w = writes.pop_front().into_iter().collect();
                    self.wait_writes(w, step)?;
                    report.write_wait += t.elapsed();
                }
            }
            Ok(())
        })();
        // Settle every ticket, also after an error, so nothing is in
        // flight when the caller cleans up.
        let t = Instant::now();
        for (_, r) in reads.drain(..) {
            let _ = r.wait();
        }
        let written = self.wait_writes(writes.drain(..).collect(), step);
        let synced = written.and_then(|()| self.pager.sync().map_err(ClientError::from));
        report.write_wait += t.elapsed();
        result?;
        synced?;
        Ok(crcs)
    }
}
