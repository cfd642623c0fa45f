//! The NVMe tier: one data file per pager, extents allocated in it, each
//! block of an extent checksummed (crc32) when written and verified when
//! read, moved by io_uring (or pread/pwrite where io_uring is refused) with
//! O_DIRECT (or buffered where the file system rejects it).
//!
//! Errors (ENOSPC, EIO, short transfers, checksum mismatches) come back as
//! [`TierError`]s naming the file and offset; a failed write frees its
//! extent and a failed read leaves the extent as it was, so the object stays
//! where it was.

mod engine;
mod extent;
mod fault;
mod file;
mod lanes;
mod pread;
mod registry;
mod uring;

#[cfg(test)]
mod test;

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use fault::{Fault, FaultInjector, IoOp};
pub(crate) use registry::Registration;

use crate::config::{IoEngineChoice, NvmeConfig, Toggle};
use crate::ddr::HostBlock;
use crate::error::{Result, TierError};
use engine::{Buf, Engine, OnChunk, RawError, Request};
use extent::ExtentAllocator;
use file::DataFile;
use lanes::Lanes;
use pread::PreadEngine;
use registry::Registrar;
use uring::UringEngine;

/// Alignment of NVMe offsets, lengths and buffers (O_DIRECT's rule).
pub const ALIGN: usize = 4096;

/// Which system interface moves the NVMe tier's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoPath {
    /// io_uring with up to `queue_depth` requests in flight.
    IoUring {
        /// Requests in flight at once.
        queue_depth: u32,
        /// Whether DDR blocks are registered with the ring (ReadFixed and
        /// WriteFixed, within the memlock budget).
        registered_buffers: bool,
    },
    /// pread/pwrite, one request at a time per lane.
    Pread,
}

impl std::fmt::Display for IoPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoPath::IoUring { queue_depth, registered_buffers } => {
                let registered = if *registered_buffers { "registered" } else { "unregistered" };
                write!(f, "io_uring (queue depth {queue_depth}, {registered} buffers)")
            }
            IoPath::Pread => f.write_str("pread/pwrite"),
        }
    }
}

/// How the NVMe tier does its I/O, for [`crate::PagerStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeIoInfo {
    /// io_uring or pread (of the first lane; others fall back alone).
    pub path: IoPath,
    /// Transfers that can run at once, each on its own engine
    /// (`nvme.lanes`).
    pub lanes: usize,
    /// Whether the file is open O_DIRECT.
    pub direct: bool,
    /// Bytes per request and per checksummed block.
    pub block_size: usize,
    /// The data file.
    pub file: PathBuf,
    /// DDR blocks registered with io_uring now.
    pub registered_blocks: usize,
    /// Their bytes (locked memory).
    pub registered_bytes: u64,
    /// The most bytes that may be registered (the memlock budget).
    pub memlock_budget: u64,
    /// Why a fallback happened (io_uring refused, O_DIRECT rejected,
    /// registration off), in order.
    pub notes: Vec<String>,
}

/// One object's copy on NVMe: an extent and its blocks' checksums.
#[derive(Debug)]
pub(crate) struct NvmeCopy {
    offset: u64,
    len: usize,
    crcs: Vec<u32>,
}

impl NvmeCopy {
    /// Bytes the extent takes (whole pages).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Byte offset of the extent in the data file.
    #[cfg(test)]
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }
}

/// Where an object's NVMe copy lies in the data file, and its blocks'
/// checksums: what a client records (e.g. in a manifest) to adopt the copy
/// again in a later pager over the same, persistent file
/// ([`crate::Pager::nvme_extent`], [`crate::Pager::adopt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeExtent {
    /// Byte offset in the data file (a multiple of [`ALIGN`]).
    pub offset: u64,
    /// Bytes the extent takes: the object's size padded to whole pages.
    pub len: u64,
    /// Bytes per checksummed block (`nvme.block_size` when it was written).
    pub block_size: usize,
    /// crc32 of each block, in order (the last block may be shorter).
    pub crcs: Vec<u32>,
}

impl NvmeCopy {
    /// The extent, for [`NvmeExtent`].
    pub(crate) fn extent(&self, block_size: usize) -> NvmeExtent {
        NvmeExtent { offset: self.offset, len: self.len as u64, block_size, crcs: self.crcs.clone() }
    }
}

/// The NVMe tier's store.
pub(crate) struct NvmeStore {
    /// The data file. Transfers hold it shared; reopening it buffered holds
    /// it exclusively, so no transfer runs on the old descriptor meanwhile.
    file: RwLock<DataFile>,
    /// The engines; each runs one transfer at a time.
    lanes: Lanes,
    /// Why fallbacks happened, in order.
    notes: Mutex<Vec<String>>,
    /// Lane 0's registration table (kept when that lane later falls back
    /// to pread, which ignores slots).
    registrar: Option<Arc<Registrar>>,
    extents: Mutex<ExtentAllocator>,
    block: usize,
    direct: Toggle,
    faults: FaultInjector,
}

impl NvmeStore {
    /// Creates the data file in `cfg.dir` and picks the I/O engine, with
    /// `lanes` transfers at once (at least 1).
    pub(crate) fn open(cfg: &NvmeConfig, lanes: usize) -> Result<Self> {
        let (file, direct_note) = DataFile::create(&cfg.dir, cfg.direct, cfg.file.as_deref())?;
        let mut notes: Vec<String> = direct_note.into_iter().collect();
        let budget = cfg.memlock_budget.unwrap_or_else(default_memlock_budget);
        let first = match cfg.io {
            IoEngineChoice::Pread => {
                notes.push("pread/pwrite chosen in the config (nvme.io = pread)".into());
                Engine::Pread(PreadEngine)
            }
            choice => match UringEngine::new(cfg.queue_depth, cfg.register_buffers, budget) {
                Ok((u, note)) => {
                    notes.extend(note);
                    Engine::Uring(u)
                }
                Err(e) if choice == IoEngineChoice::Auto => {
                    notes.push(format!("io_uring refused ({e}): pread/pwrite"));
                    Engine::Pread(PreadEngine)
                }
                Err(e) => {
                    return Err(TierError::Io {
                        op: "io_uring setup",
                        path: file.path().to_path_buf(),
                        offset: 0,
                        len: 0,
                        source: e,
                    })
                }
            },
        };
        let registrar = match &first {
            Engine::Uring(u) => Some(u.registrar().clone()),
            Engine::Pread(_) => None,
        };
        let engines = more_lanes(first, cfg.queue_depth, lanes.max(1), &mut notes);
        Ok(NvmeStore {
            file: RwLock::new(file),
            lanes: Lanes::new(engines),
            notes: Mutex::new(notes),
            registrar,
            extents: Mutex::new(ExtentAllocator::default()),
            block: cfg.block_size,
            direct: cfg.direct,
            faults: cfg.faults.clone(),
        })
    }

    /// Writes `src` (all its pages) to a new extent. On error the extent is
    /// freed again.
    pub(crate) fn write(&self, src: &HostBlock) -> Result<NvmeCopy> {
        let len = src.padded_len();
        let offset = self.extents.lock().alloc(len as u64);
        let mut crcs = vec![0u32; len.div_ceil(self.block)];
        let mut on_chunk = |i: usize, data: &[u8]| {
            crcs[i] = crc32fast::hash(data);
            Ok(())
        };
        let slot = self.slot_for(src);
        match self.transfer("write", offset, Buf::Write(src.padded()), slot, &mut on_chunk) {
            Ok(()) => Ok(NvmeCopy { offset, len, crcs }),
            Err(e) => {
                self.extents.lock().free(offset, len as u64);
                Err(e)
            }
        }
    }

    /// Reads `copy` into `dst` (all its pages), verifying every block's
    /// checksum.
    pub(crate) fn read(&self, copy: &NvmeCopy, dst: &mut HostBlock) -> Result<()> {
        let path = self.file.read().path().to_path_buf();
        if dst.padded_len() != copy.len {
            return Err(TierError::ShortIo {
                op: "read (buffer size)",
                path,
                offset: copy.offset,
                expected: copy.len,
                got: dst.padded_len(),
            });
        }
        let block = self.block;
        let mut on_chunk = |i: usize, data: &[u8]| {
            let found = crc32fast::hash(data);
            let expected = copy.crcs.get(i).copied().unwrap_or(0);
            if found == expected {
                Ok(())
            } else {
                Err(TierError::Checksum {
                    path: path.clone(),
                    offset: copy.offset + (i * block) as u64,
                    len: data.len(),
                    expected,
                    found,
                })
            }
        };
        let slot = self.slot_for(dst);
        self.transfer("read", copy.offset, Buf::Read(dst.padded_mut()), slot, &mut on_chunk)
    }

    /// The registered slot of `block` on the io_uring, registering it when
    /// possible.
    fn slot_for(&self, block: &HostBlock) -> Option<u16> {
        if !self.lanes.registered_ring() {
            return None;
        }
        self.registrar.as_ref()?.slot_for(block)
    }

    /// Takes over an extent an earlier pager wrote to this (persistent)
    /// file: checks its shape against this store and reserves its range.
    /// `Err(reason)` when it does not fit.
    pub(crate) fn adopt(&self, extent: &NvmeExtent, padded: usize) -> std::result::Result<NvmeCopy, String> {
        if extent.block_size != self.block {
            return Err(format!(
                "written with block size {}, but this pager's nvme.block_size is {}",
                extent.block_size, self.block
            ));
        }
        if extent.len != padded as u64 {
            return Err(format!("length {} differs from the object's padded size {padded}", extent.len));
        }
        if extent.offset % ALIGN as u64 != 0 {
            return Err(format!("offset {} is not a multiple of {ALIGN}", extent.offset));
        }
        let blocks = padded.div_ceil(self.block);
        if extent.crcs.len() != blocks {
            return Err(format!("{} block checksums given, {blocks} expected", extent.crcs.len()));
        }
        self.extents.lock().reserve(extent.offset, extent.len).map_err(|r| r.to_string())?;
        Ok(NvmeCopy { offset: extent.offset, len: padded, crcs: extent.crcs.clone() })
    }

    /// The block size checksums are taken over.
    pub(crate) fn block_size(&self) -> usize {
        self.block
    }

    /// Frees `copy`'s extent.
    pub(crate) fn free(&self, copy: &NvmeCopy) {
        self.extents.lock().free(copy.offset, copy.len as u64);
    }

    /// One past the last byte of the data file in use (tests).
    #[cfg(test)]
    pub(crate) fn extent_end(&self) -> u64 {
        self.extents.lock().end()
    }

    /// fdatasync on the data file.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.read().sync()
    }

    /// The engine, O_DIRECT state, registrations and fallback notes.
    pub(crate) fn info(&self) -> NvmeIoInfo {
        let (path, (registered_blocks, registered_bytes), memlock_budget) = match &*self.lanes.first() {
            Engine::Uring(u) => (
                IoPath::IoUring {
                    queue_depth: u32::try_from(u.depth()).unwrap_or(u32::MAX),
                    registered_buffers: u.registrar().has_table(),
                },
                u.registrar().registered(),
                u.registrar().budget(),
            ),
            Engine::Pread(_) => (IoPath::Pread, (0, 0), 0),
        };
        let file = self.file.read();
        NvmeIoInfo {
            path,
            lanes: self.lanes.count(),
            direct: file.is_direct(),
            block_size: self.block,
            file: file.path().to_path_buf(),
            registered_blocks,
            registered_bytes,
            memlock_budget,
            notes: self.notes.lock().clone(),
        }
    }

    /// Runs one transfer on a free lane, with the fallbacks: EINVAL on an
    /// O_DIRECT file reopens it buffered (unless O_DIRECT is forced on) and
    /// a broken ring moves its lane to pread; each retries the transfer
    /// once. `slot` counts only on lane 0, whose ring it belongs to.
    fn transfer(
        &self,
        op: &'static str,
        offset: u64,
        mut buf: Buf<'_>,
        slot: Option<u16>,
        on_chunk: OnChunk<'_>,
    ) -> Result<()> {
        let mut lane = self.lanes.acquire(slot.is_some());
        let slot = slot.filter(|_| lane.index == 0);
        let len = buf.len();
        let mut retried = false;
        loop {
            let file = self.file.read();
            let req = Request { fd: file.fd(), offset, chunk: self.block, faults: &self.faults };
            let buf_again = match &mut buf {
                Buf::Read(b) => Buf::Read(b),
                Buf::Write(b) => Buf::Write(b),
            };
            let err = match lane.engine.run(&req, buf_again, slot, &mut *on_chunk) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let (was_direct, path) = (file.is_direct(), file.path().to_path_buf());
            drop(file);
            let rejected_direct = matches!(err, RawError::Os { errno: libc::EINVAL, .. });
            if !retried && rejected_direct && was_direct && self.direct == Toggle::Auto {
                let mut file = self.file.write();
                // Another lane may have reopened it meanwhile.
                if file.is_direct() {
                    file.reopen_buffered()?;
                    let note = format!("O_DIRECT rejected with EINVAL during a {op}: reopened buffered");
                    self.notes.lock().push(note);
                }
                retried = true;
                continue;
            }
            if let (false, Engine::Uring(u)) = (retried, &*lane.engine) {
                if u.is_poisoned() {
                    let note = format!("io_uring of lane {} failed during a {op} ({err:?}): pread/pwrite", lane.index);
                    self.notes.lock().push(note);
                    if lane.index == 0 {
                        self.lanes.first_fell_back();
                    }
                    *lane.engine = Engine::Pread(PreadEngine);
                    retried = true;
                    continue;
                }
            }
            return Err(match err {
                RawError::Os { offset, len, errno } => {
                    TierError::Io { op, path, offset, len, source: std::io::Error::from_raw_os_error(errno) }
                }
                RawError::Short { offset, expected, got } => TierError::ShortIo { op, path, offset, expected, got },
                RawError::Chunk(e) => e,
                RawError::Ring(source) => TierError::Io { op, path, offset, len, source },
            });
        }
    }
}

/// `first` and `lanes - 1` more engines of its kind: io_uring rings without
/// registration tables (a ring that cannot be made ends the list, with a
/// note), or pread.
fn more_lanes(first: Engine, depth: u32, lanes: usize, notes: &mut Vec<String>) -> Vec<Engine> {
    let uring = matches!(first, Engine::Uring(_));
    let mut engines = vec![first];
    while engines.len() < lanes {
        if !uring {
            engines.push(Engine::Pread(PreadEngine));
            continue;
        }
        match UringEngine::new(depth, false, 0) {
            Ok((u, _)) => engines.push(Engine::Uring(u)),
            Err(e) => {
                notes.push(format!("io_uring for lane {} refused ({e}): {} lanes", engines.len(), engines.len()));
                break;
            }
        }
    }
    engines
}

/// Half of RLIMIT_MEMLOCK, or unlimited for a process with CAP_IPC_LOCK
/// (the kernel does not charge its io_uring buffers).
fn default_memlock_budget() -> u64 {
    if has_cap_ipc_lock() {
        return u64::MAX;
    }
    crate::config::memlock_limit_bytes() / 2
}

/// Whether CAP_IPC_LOCK is in the effective capability set.
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}
