//! The fallback engine: pread/pwrite, one block at a time, for machines
//! where io_uring is refused (EPERM, ENOSYS) or turned off in the config.

use super::engine::{check, Buf, OnChunk, RawError, Request};
use super::fault::IoOp;

/// pread/pwrite on the caller's buffer.
#[derive(Debug, Default)]
pub(crate) struct PreadEngine;

impl PreadEngine {
    pub(crate) fn run(&mut self, req: &Request<'_>, buf: Buf<'_>, on_chunk: OnChunk<'_>) -> Result<(), RawError> {
        let len = buf.len();
        let mut start = 0usize;
        let mut i = 0usize;
        match buf {
            Buf::Read(b) => {
                while start < len {
                    let n = req.chunk.min(len - start);
                    let offset = req.offset + start as u64;
                    let piece = &mut b[start..start + n];
                    let outcome = req.faults.apply(IoOp::Read, retry_eintr(|| pread(req.fd, piece, offset)));
                    check(outcome.result, offset, n)?;
                    if outcome.corrupt {
                        piece[0] ^= 0xff;
                    }
                    on_chunk(i, piece).map_err(RawError::Chunk)?;
                    start += n;
                    i += 1;
                }
            }
            Buf::Write(b) => {
                while start < len {
                    let n = req.chunk.min(len - start);
                    let offset = req.offset + start as u64;
                    let piece = &b[start..start + n];
                    on_chunk(i, piece).map_err(RawError::Chunk)?;
                    let outcome = req.faults.apply(IoOp::Write, retry_eintr(|| pwrite(req.fd, piece, offset)));
                    check(outcome.result, offset, n)?;
                    start += n;
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

/// Repeats `f` while it fails with EINTR.
fn retry_eintr(mut f: impl FnMut() -> i64) -> i64 {
    loop {
        let r = f();
        if r != -i64::from(libc::EINTR) {
            return r;
        }
    }
}

fn offset_t(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

/// Bytes read, or `-errno`.
fn pread(fd: i32, buf: &mut [u8], offset: u64) -> i64 {
    // SAFETY: `buf` is a live, exclusively borrowed region of `buf.len()`
    // bytes for the whole (synchronous) call.
    let r = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), offset_t(offset)) };
    errno_or(r as i64)
}

/// Bytes written, or `-errno`.
fn pwrite(fd: i32, buf: &[u8], offset: u64) -> i64 {
    // SAFETY: `buf` is a live region of `buf.len()` bytes for the whole
    // (synchronous) call; pwrite only reads it.
    let r = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), offset_t(offset)) };
    errno_or(r as i64)
}

fn errno_or(r: i64) -> i64 {
    if r < 0 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    } else {
        r
    }
}
