//! memwall-tiers: the three-tier memory manager (GPU HBM, host DDR, NVMe).
//!
//! This crate is the home of the pager and its backends; they land with the
//! tier-manager work. Today it only re-exports the core crate so the
//! workspace layout, lints and CI cover it from the start.

pub use memwall;
