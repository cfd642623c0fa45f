//! The tier clients' error type.

use std::path::PathBuf;

use crate::error::TierError;
use crate::tier::Tier;

/// What the tier clients refuse or fail at. Messages name the expert,
/// optimizer partition, KV sequence, file or value involved; pager failures
/// keep the pager's [`TierError`] as their source. An error loses no state:
/// the call left the client as it was (see each client's docs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A pager call failed outside any one expert, partition or sequence.
    #[error(transparent)]
    Tier(Box<TierError>),

    /// A value the client cannot use (a shape, a count, a setting).
    #[error("{what} = {value}: {reason}")]
    Invalid {
        /// What was given, e.g. `layers` or `partition_elems`.
        what: &'static str,
        /// The value.
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// A slice of the wrong length.
    #[error("{what}: {got} elements given, {expected} expected")]
    Length {
        /// Which argument.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length needed.
        expected: usize,
    },

    /// An expert index outside the cache.
    #[error("expert (layer {layer}, expert {expert}) is out of range: {layers} layers x {experts} FFN experts")]
    NoSuchExpert {
        /// The layer asked for.
        layer: usize,
        /// The expert asked for.
        expert: usize,
        /// Layers in the cache.
        layers: usize,
        /// FFN experts per layer.
        experts: usize,
    },

    /// Pinning, loading or fetching one expert failed.
    #[error("expert (layer {layer}, expert {expert}): {source}")]
    Expert {
        /// The layer.
        layer: usize,
        /// The expert.
        expert: usize,
        /// The pager's error.
        #[source]
        source: Box<TierError>,
    },

    /// A routing trace that cannot be parsed.
    #[error("expert trace, line {line}: {reason}")]
    Trace {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// Reading or writing one optimizer partition failed; the step did not
    /// happen (the state is the previous step's).
    #[error("optimizer partition {partition} during step {step}: {source}")]
    Partition {
        /// The partition.
        partition: usize,
        /// The step being taken (previous step + 1), or the step being
        /// restored.
        step: u64,
        /// The pager's error.
        #[source]
        source: Box<TierError>,
    },

    /// `OptimizerOffload::create` found state in the folder already.
    #[error("optimizer state exists in {dir} ({manifest} is there): open it, or use an empty folder")]
    StateExists {
        /// The folder.
        dir: PathBuf,
        /// The manifest file found.
        manifest: PathBuf,
    },

    /// A manifest line that cannot be used.
    #[error("optimizer manifest {path}, line {line}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// The manifest's own checksum does not match its contents.
    #[error("optimizer manifest {path} is corrupt: crc32 {found:#010x}, expected {expected:#010x}")]
    ManifestChecksum {
        /// The manifest file.
        path: PathBuf,
        /// The checksum recorded in it.
        expected: u32,
        /// The checksum of what was read.
        found: u32,
    },

    /// A partition's data does not match the manifest's checksum for it.
    #[error(
        "optimizer partition {partition} in {path} is corrupt: crc32 {found:#010x}, expected {expected:#010x} \
         (manifest of step {step})"
    )]
    StateChecksum {
        /// The partition.
        partition: usize,
        /// The data file.
        path: PathBuf,
        /// The step the manifest records.
        step: u64,
        /// The checksum in the manifest.
        expected: u32,
        /// The checksum of the data read.
        found: u32,
    },

    /// A file operation of a client (manifest, trace) failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`write`, `rename`, `fsync`, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// No such sequence in the KV cache (never added, or freed).
    #[error("sequence {seq} is not in the KV cache")]
    UnknownSequence {
        /// The sequence id.
        seq: u64,
    },

    /// The operation needs the sequence's blocks in the pool, but it is
    /// swapped out.
    #[error("sequence {seq} is swapped out to {tier}: swap it in first")]
    SwappedOut {
        /// The sequence.
        seq: u64,
        /// Where its blocks are.
        tier: Tier,
    },

    /// `swap_in` of a sequence whose blocks are in the pool.
    #[error("sequence {seq} is not swapped out")]
    NotSwappedOut {
        /// The sequence.
        seq: u64,
    },

    /// Not enough free pages in the KV pool.
    #[error("KV pool full: sequence {seq} needs {needed} free pages, {free} of {pages} are free")]
    PoolFull {
        /// The sequence that needed them.
        seq: u64,
        /// Pages needed.
        needed: usize,
        /// Pages free.
        free: usize,
        /// Pages in the pool.
        pages: usize,
    },

    /// A token position past a sequence's length.
    #[error("sequence {seq}: position {pos} is past its length {len}")]
    Position {
        /// The sequence.
        seq: u64,
        /// The position asked for.
        pos: usize,
        /// Its length.
        len: usize,
    },

    /// Swapping a sequence out or in failed; the sequence is where it was
    /// (in the pool after a failed swap-out, swapped out after a failed
    /// swap-in), its data intact.
    #[error("swapping sequence {seq} {direction} ({tier}): {source}")]
    Swap {
        /// The sequence.
        seq: u64,
        /// `out` or `in`.
        direction: &'static str,
        /// The tier swapped to or from.
        tier: Tier,
        /// The pager's error.
        #[source]
        source: Box<TierError>,
    },
}

impl From<TierError> for ClientError {
    fn from(e: TierError) -> Self {
        ClientError::Tier(Box::new(e))
    }
}

impl ClientError {
    /// The pager error at the root of this error, if there is one.
    pub fn tier_error(&self) -> Option<&TierError> {
        match self {
            ClientError::Tier(e)
            | ClientError::Expert { source: e, .. }
            | ClientError::Partition { source: e, .. }
            | ClientError::Swap { source: e, .. } => Some(e.as_ref().root()),
            _ => None,
        }
    }

    /// The OS error number at the root (ENOSPC, EIO, ...), if any.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            ClientError::Io { source, .. } => source.raw_os_error(),
            _ => self.tier_error().and_then(TierError::os_error),
        }
    }

    pub(crate) fn invalid(what: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        ClientError::Invalid { what, value: value.to_string(), reason: reason.into() }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ClientError::Io { op, path: path.into(), source }
    }
}
