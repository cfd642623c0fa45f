//! What the two I/O engines share: the request shape, chunk callbacks and
//! raw failures (before the store adds the file's path).

use std::os::fd::RawFd;

use super::fault::FaultInjector;
use super::pread::PreadEngine;
use super::uring::UringEngine;
use crate::error::TierError;

/// The buffer of one transfer: read into, or written from. Its length is a
/// multiple of 4096 and it is page-aligned (O_DIRECT's rules).
pub(crate) enum Buf<'a> {
    /// Filled from the file.
    Read(&'a mut [u8]),
    /// Written to the file.
    Write(&'a [u8]),
}

impl Buf<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Buf::Read(b) => b.len(),
            Buf::Write(b) => b.len(),
        }
    }
}

/// Where a transfer goes in the file, and how it is split.
pub(crate) struct Request<'a> {
    /// The data file's descriptor.
    pub(crate) fd: RawFd,
    /// Byte offset of the transfer in the file.
    pub(crate) offset: u64,
    /// Bytes per request (the last may be shorter).
    pub(crate) chunk: usize,
    /// Faults to inject into results.
    pub(crate) faults: &'a FaultInjector,
}

/// Called per chunk `i` with its bytes: after it was read (to verify it), or
/// before it is written (to checksum it).
pub(crate) type OnChunk<'a> = &'a mut dyn FnMut(usize, &[u8]) -> Result<(), TierError>;

/// A failed transfer, before the path is known.
#[derive(Debug)]
pub(crate) enum RawError {
    /// A request returned `-errno`.
    Os { offset: u64, len: usize, errno: i32 },
    /// A request moved fewer bytes than asked.
    Short { offset: u64, expected: usize, got: usize },
    /// The chunk callback refused the data (a checksum mismatch).
    Chunk(TierError),
    /// io_uring itself failed (io_uring_enter).
    Ring(std::io::Error),
}

/// Converts a request's signed result into bytes or a raw error.
pub(crate) fn check(result: i64, offset: u64, expected: usize) -> Result<(), RawError> {
    if result < 0 {
        let errno = i32::try_from(-result).unwrap_or(libc::EIO);
        return Err(RawError::Os { offset, len: expected, errno });
    }
    let got = usize::try_from(result).unwrap_or(0);
    if got != expected {
        return Err(RawError::Short { offset, expected, got });
    }
    Ok(())
}

/// The active engine.
pub(crate) enum Engine {
    /// io_uring with a queue depth.
    Uring(UringEngine),
    /// pread/pwrite, one request at a time.
    Pread(PreadEngine),
}

impl Engine {
    /// Runs one transfer; returns only when no request is in flight.
    /// `slot` is the buffer's registered slot on the io_uring, if any.
    pub(crate) fn run(
        &mut self,
        req: &Request<'_>,
        buf: Buf<'_>,
        slot: Option<u16>,
        on_chunk: OnChunk<'_>,
    ) -> Result<(), RawError> {
        match self {
            Engine::Uring(u) => u.run(req, buf, slot, on_chunk),
            Engine::Pread(p) => p.run(req, buf, on_chunk),
        }
    }
}
