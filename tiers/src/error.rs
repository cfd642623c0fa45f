//! The one error type of `memwall-tiers`.

use std::path::PathBuf;

use crate::object::ObjectId;
use crate::tier::Tier;

/// Shorthand for results in this crate.
pub type Result<T, E = TierError> = std::result::Result<T, E>;

/// Everything the pager and its backends can refuse or fail at. Messages name
/// the object, tier, file, offset and sizes involved. An error never loses
/// data: the object keeps the copies it had before the failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    /// A config line or value that cannot be used.
    #[error("config {key}: {value:?} is invalid: {reason}")]
    Config {
        /// The key, e.g. `nvme.queue_depth` (or `line N` for a malformed line).
        key: String,
        /// The offending value.
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// An extent given to [`crate::Pager::adopt`] does not fit this pager.
    #[error("{id}: cannot adopt the NVMe extent at offset {offset} ({len} bytes): {reason}")]
    BadExtent {
        /// The object.
        id: ObjectId,
        /// The extent's offset in the data file.
        offset: u64,
        /// The extent's length.
        len: u64,
        /// Why it was refused (overlap, size, block size, checksum count).
        reason: String,
    },

    /// No object with this id is registered.
    #[error("{id} is not registered")]
    UnknownObject {
        /// The id asked for.
        id: ObjectId,
    },

    /// The id is registered already.
    #[error("{id} is already registered (size {size} bytes)")]
    AlreadyRegistered {
        /// The id.
        id: ObjectId,
        /// Size of the registered object.
        size: usize,
    },

    /// An object of zero bytes.
    #[error("{id}: size 0 is not allowed")]
    ZeroSize {
        /// The id.
        id: ObjectId,
    },

    /// Data of the wrong length for the object.
    #[error("{id} is {expected} bytes, but {got} bytes were given")]
    SizeMismatch {
        /// The object.
        id: ObjectId,
        /// Its registered size.
        expected: usize,
        /// The length given.
        got: usize,
    },

    /// The object can never fit in the tier.
    #[error("{id} ({size} bytes) is larger than the whole {tier} tier ({capacity} bytes)")]
    TooLarge {
        /// The object.
        id: ObjectId,
        /// Its size in the tier (padded to the tier's granule).
        size: u64,
        /// The tier.
        tier: Tier,
        /// The tier's capacity.
        capacity: u64,
    },

    /// No room in the tier and nothing evictable.
    #[error(
        "{tier} tier full: {requested} bytes needed for {id}, {used} of {capacity} bytes in use and no \
         evictable copy ({unevictable} pinned or busy)"
    )]
    TierFull {
        /// The tier.
        tier: Tier,
        /// The object that needed room.
        id: ObjectId,
        /// Bytes needed.
        requested: u64,
        /// Bytes in use (including reservations).
        used: u64,
        /// The tier's capacity.
        capacity: u64,
        /// Copies that could not be evicted.
        unevictable: usize,
    },

    /// The tier does not exist on this machine or in this config.
    #[error("the {tier} tier is not available: {reason}")]
    TierUnavailable {
        /// The tier.
        tier: Tier,
        /// Why (e.g. no CUDA driver, disabled in the config).
        reason: String,
    },

    /// A pin asked for a view the tier cannot give.
    #[error("{id}: {what} is not possible in the {tier} tier")]
    NotViewable {
        /// The object.
        id: ObjectId,
        /// The tier.
        tier: Tier,
        /// What was asked (e.g. "a host view", "pinning").
        what: &'static str,
    },

    /// The copy is pinned in a way that conflicts with the request.
    #[error("{id} in {tier}: {detail}")]
    PinConflict {
        /// The object.
        id: ObjectId,
        /// The tier of the conflicting pin.
        tier: Tier,
        /// What conflicts.
        detail: &'static str,
    },

    /// Dropping this copy would lose the only copy of the object.
    #[error("{id}: evicting its {tier} copy would lose the only copy of the data")]
    WouldLoseData {
        /// The object.
        id: ObjectId,
        /// The tier of its only copy.
        tier: Tier,
    },

    /// A typed view whose element type does not fit the object.
    #[error("{id} ({size} bytes) cannot be viewed as [{type_name}]: {reason}")]
    View {
        /// The object.
        id: ObjectId,
        /// Its size in bytes.
        size: usize,
        /// The element type asked for.
        type_name: &'static str,
        /// bytemuck's reason (size not a multiple, alignment).
        reason: String,
    },

    /// A file operation of the NVMe tier failed.
    #[error("NVMe {op} of {len} bytes at offset {offset} in {path}: {source}")]
    Io {
        /// `read`, `write`, `open`, ...
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes asked for.
        len: usize,
        /// The OS error (ENOSPC, EIO, ...).
        #[source]
        source: std::io::Error,
    },

    /// A read or write moved fewer bytes than asked.
    #[error("NVMe short {op} at offset {offset} in {path}: {got} of {expected} bytes")]
    ShortIo {
        /// `read` or `write`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes asked for.
        expected: usize,
        /// Bytes moved.
        got: usize,
    },

    /// Data read back from an NVMe extent does not match its checksum.
    #[error("NVMe checksum mismatch in extent at offset {offset} ({len} bytes) of {path}: crc32 {found:#010x}, expected {expected:#010x}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The extent's offset.
        offset: u64,
        /// The extent's length.
        len: usize,
        /// The checksum written with the extent.
        expected: u32,
        /// The checksum of what was read.
        found: u32,
    },

    /// Host memory could not be allocated.
    #[error("allocating {bytes} bytes of {what} host memory failed")]
    HostAlloc {
        /// Bytes asked for.
        bytes: usize,
        /// `page-aligned` or `pinned`.
        what: &'static str,
    },

    /// A CUDA call of the HBM tier failed.
    #[error("CUDA {during}: {source}")]
    Cuda {
        /// What the tier was doing.
        during: String,
        /// memwall's error (carrying the driver's).
        #[source]
        source: memwall::Error,
    },

    /// Moving an object between tiers failed; the object is still where it
    /// was.
    #[error("moving {id} ({size} bytes) from {from} to {to}: {source}")]
    Transfer {
        /// The object.
        id: ObjectId,
        /// Its size.
        size: usize,
        /// The source tier (`to` itself when the object was zero-filled).
        from: Tier,
        /// The destination tier.
        to: Tier,
        /// What failed.
        #[source]
        source: Box<TierError>,
    },

    /// Making room failed while evicting another object.
    #[error("evicting {victim} from {tier} to make room for {id}: {source}")]
    Eviction {
        /// The object that needed room.
        id: ObjectId,
        /// The object being evicted.
        victim: ObjectId,
        /// The tier being freed.
        tier: Tier,
        /// What failed.
        #[source]
        source: Box<TierError>,
    },

    /// A prefetch worker panicked while fetching (a bug: please report it).
    #[error("prefetch of {id} to {tier} panicked")]
    WorkerPanic {
        /// The object.
        id: ObjectId,
        /// The destination tier.
        tier: Tier,
    },

    /// The pager's prefetch workers are gone (the pager is shutting down).
    #[error("prefetch of {id} to {tier} was dropped: the pager is shutting down")]
    Shutdown {
        /// The object.
        id: ObjectId,
        /// The destination tier.
        tier: Tier,
    },
}

impl TierError {
    /// The OS error number at the root of this error (ENOSPC, EIO, ...), if
    /// the root is an I/O error.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            TierError::Io { source, .. } => source.raw_os_error(),
            TierError::Transfer { source, .. } | TierError::Eviction { source, .. } => source.os_error(),
            _ => None,
        }
    }

    /// The innermost error: past [`TierError::Transfer`] and
    /// [`TierError::Eviction`] wrappers.
    pub fn root(&self) -> &TierError {
        match self {
            TierError::Transfer { source, .. } | TierError::Eviction { source, .. } => source.root(),
            e => e,
        }
    }

    pub(crate) fn config(key: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        TierError::Config { key: key.into(), value: value.to_string(), reason: reason.into() }
    }

    pub(crate) fn cuda(during: impl Into<String>, source: memwall::Error) -> Self {
        TierError::Cuda { during: during.into(), source }
    }
}
