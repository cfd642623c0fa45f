//! The io_uring engine: up to `depth` block requests in flight, straight
//! into the tier's own buffers: ReadFixed/WriteFixed where the buffer is a
//! registered block (see [`super::registry`]), Read/Write otherwise.

use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring};

use super::engine::{check, Buf, OnChunk, RawError, Request};
use super::fault::IoOp;
use super::registry::Registrar;

/// An io_uring and its registration table.
pub(crate) struct UringEngine {
    registrar: Arc<Registrar>,
    depth: usize,
    /// Reused completion list.
    done: Vec<(u64, i32)>,
    /// io_uring_enter failed: the ring is never entered again.
    poisoned: bool,
}

impl UringEngine {
    /// A ring of `depth` entries; with `register`, a table for registered
    /// blocks within `memlock_budget` bytes. Fails only when the ring itself
    /// cannot be made (the caller falls back to pread). The note says why
    /// registration is off, if it is.
    pub(crate) fn new(depth: u32, register: bool, memlock_budget: u64) -> std::io::Result<(Self, Option<String>)> {
        let ring = IoUring::new(depth.next_power_of_two())?;
        let (registrar, note) = Registrar::new(ring, register, memlock_budget);
        Ok((UringEngine { registrar, depth: depth as usize, done: Vec::new(), poisoned: false }, note))
    }

    /// The registration table.
    pub(crate) fn registrar(&self) -> &Arc<Registrar> {
        &self.registrar
    }

    /// Requests in flight at most.
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// Whether io_uring_enter failed; the store then moves to pread.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Runs one transfer; `slot` is the buffer's registered slot, if any.
    /// Never returns while a request is in flight, so the caller's buffer is
    /// never touched by the kernel after it is released.
    pub(crate) fn run(
        &mut self,
        req: &Request<'_>,
        buf: Buf<'_>,
        slot: Option<u16>,
        on_chunk: OnChunk<'_>,
    ) -> Result<(), RawError> {
        let (base, len, op) = match buf {
            Buf::Read(b) => (b.as_mut_ptr(), b.len(), IoOp::Read),
            Buf::Write(b) => (b.as_ptr().cast_mut(), b.len(), IoOp::Write),
        };
        let chunks = len.div_ceil(req.chunk);
        let registrar = self.registrar.clone();
        let mut ring = registrar.ring.lock();
        let (mut next, mut inflight) = (0usize, 0usize);
        let mut first_err: Option<RawError> = None;
        loop {
            while first_err.is_none() && next < chunks && inflight < self.depth {
                let start = next * req.chunk;
                let n = req.chunk.min(len - start);
                let offset = req.offset + start as u64;
                // SAFETY: `start < len`, so the pointer stays inside the
                // caller's buffer.
                let ptr = unsafe { base.add(start) };
                if op == IoOp::Write {
                    // SAFETY: chunk `next` of the caller's buffer, `n` bytes
                    // at `ptr`, lent shared for this transfer and not written
                    // by anyone meanwhile.
                    let data = unsafe { std::slice::from_raw_parts(ptr, n) };
                    if let Err(e) = on_chunk(next, data) {
                        first_err = Some(RawError::Chunk(e));
                        break;
                    }
                }
                let entry = entry(op, req.fd, slot, ptr, n, offset).user_data(next as u64);
                // SAFETY: the entry's buffer (chunk `next` of the caller's
                // buffer, inside the registered block when `slot` is set)
                // stays valid until its completion is reaped below: this
                // function does not return while `inflight > 0`.
                if unsafe { ring.submission().push(&entry) }.is_err() {
                    // Cannot happen (inflight < depth <= ring size); a ring
                    // failure rather than a panic.
                    first_err = Some(RawError::Ring(std::io::Error::other("io_uring submission queue full")));
                    break;
                }
                next += 1;
                inflight += 1;
            }
            // Entries still in the submission queue were never seen by the
            // kernel; once poisoned, they never will be.
            if inflight == 0 || (self.poisoned && inflight <= ring.submission().len()) {
                break;
            }
            if self.poisoned {
                std::thread::sleep(std::time::Duration::from_millis(1));
            } else if let Err(e) = submit_and_wait(&ring) {
                // io_uring_enter itself failed. Requests the kernel already
                // took still complete on their own: keep reaping them (the
                // buffer must outlive them), but never enter again.
                first_err.get_or_insert(RawError::Ring(e));
                self.poisoned = true;
            }
            self.done.clear();
            self.done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
            for i in 0..self.done.len() {
                let (user_data, result) = self.done[i];
                inflight -= 1;
                let chunk_index = user_data as usize;
                let start = chunk_index * req.chunk;
                let n = req.chunk.min(len - start);
                let offset = req.offset + start as u64;
                let outcome = req.faults.apply(op, i64::from(result));
                let ok = check(outcome.result, offset, n);
                if let (Ok(()), IoOp::Read) = (&ok, op) {
                    // SAFETY: chunk `chunk_index` has completed, so the kernel
                    // no longer writes it; it is disjoint from every chunk
                    // still in flight, and the caller lent us the buffer
                    // exclusively.
                    let dst = unsafe { std::slice::from_raw_parts_mut(base.add(start), n) };
                    if outcome.corrupt {
                        dst[0] ^= 0xff;
                    }
                    if first_err.is_none() {
                        if let Err(e) = on_chunk(chunk_index, dst) {
                            first_err = Some(RawError::Chunk(e));
                        }
                    }
                }
                if let Err(e) = ok {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn entry(op: IoOp, fd: i32, slot: Option<u16>, ptr: *mut u8, n: usize, offset: u64) -> squeue::Entry {
    let fd = types::Fd(fd);
    // Chunks are at most MAX_BLOCK_SIZE (64 MiB), so `n` fits in u32.
    let len = u32::try_from(n).unwrap_or(u32::MAX);
    match (op, slot) {
        (IoOp::Read, Some(s)) => opcode::ReadFixed::new(fd, ptr, len, s).offset(offset).build(),
        (IoOp::Write, Some(s)) => opcode::WriteFixed::new(fd, ptr.cast_const(), len, s).offset(offset).build(),
        (IoOp::Read, None) => opcode::Read::new(fd, ptr, len).offset(offset).build(),
        (IoOp::Write, None) => opcode::Write::new(fd, ptr.cast_const(), len).offset(offset).build(),
    }
}

/// Submits what is queued and waits for one completion, retrying EINTR,
/// EAGAIN and EBUSY.
fn submit_and_wait(ring: &IoUring) -> std::io::Result<()> {
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => continue,
            Err(e) => return Err(e),
        }
    }
}
