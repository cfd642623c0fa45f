//! memwall-tiers: the three-tier memory manager (GPU HBM, host DDR, NVMe).
//!
//! One [`Pager`] over three backends:
//!
//! - **HBM**: device memory through cudarc (`memwall::gpu`), copies on their
//!   own streams, each fenced by an event. Present only where a CUDA device
//!   opens; a CPU-only machine runs DDR + NVMe.
//! - **DDR**: page-aligned host blocks, page-locked (pinned) when the HBM
//!   tier is on; staging blocks for NVMe<->HBM transfers.
//! - **NVMe**: a data file opened O_DIRECT, driven by io_uring with a queue
//!   depth and registered staging buffers (within the RLIMIT_MEMLOCK
//!   budget), or pread/pwrite where io_uring is refused (EPERM, ENOSYS);
//!   buffered where the file system rejects O_DIRECT. Every block written is
//!   checksummed and verified on read. [`PagerStats::nvme`] says which path
//!   is active and why.
//!
//! Objects ([`ObjectSpec`]: id, size, [`ObjectClass`], priority) are pinned
//! with RAII guards that give typed views ([`PinGuard::view`]), written
//! through [`Pager::pin_mut`] (which makes the copy dirty), fetched and
//! prefetched asynchronously ([`Pager::prefetch`] returns a [`Ticket`]),
//! evicted by a pluggable [`policy::Policy`], and flushed to NVMe. Errors
//! ([`TierError`]) name what failed and never lose data: an object keeps the
//! copies it had.
//!
//! The configuration ([`Config`]) has an embedded default,
//! [`config::DEFAULT_CONFIG`]; [`nvme::FaultInjector`] lets tests make the
//! NVMe tier fail with ENOSPC, EIO or short transfers.
//!
//! [`clients`] holds the pager's users: an MoE expert cache with
//! prediction-driven prefetch, a ZeRO-Infinity-style AdamW offload that
//! restarts from its NVMe files, and a paged KV cache with copy-on-write
//! prefix sharing and whole-sequence swap.

pub mod clients;
pub mod config;
pub mod ddr;
mod error;
pub mod hbm;
pub mod nvme;
mod object;
mod pager;
pub mod policy;
mod tier;

pub use config::Config;
pub use error::{Result, TierError};
pub use nvme::NvmeExtent;
pub use object::{ObjectClass, ObjectId, ObjectSpec, ObjectStatus};
pub use pager::{Pager, PagerStats, PinGuard, PinMutGuard, Ticket, TierStats};
pub use tier::Tier;

pub use memwall;
