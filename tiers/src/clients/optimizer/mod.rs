//! ZeRO-Infinity-style optimizer offload: fp32 master weights and AdamW
//! moments in pager objects (class [`crate::ObjectClass::OptimizerState`])
//! on NVMe and DDR, gradients in from the device, a multithreaded CPU
//! AdamW step streamed over partitions with the reads of the next two
//! partitions, the compute of this one and the write of the last one
//! overlapped.
//!
//! Each partition is one object, `[master | m | v]` as f32. A step reads
//! generation `g`'s objects and writes generation `g + 1`'s (shadow
//! paging), so the committed state is never overwritten in place: when
//! every new object is on NVMe and fdatasync'ed, a manifest (partition
//! table, step, extents, per-object crc32 and the pager's block checksums;
//! its own crc32 last) replaces the old one atomically (temp file, fsync,
//! rename, fsync of the folder), then generation `g` is dropped. A crash at
//! any point restarts from the last committed step:
//! [`OptimizerOffload::open`] adopts the manifest's extents in the
//! persistent data file and verifies every checksum, erroring clearly on
//! a mismatch. The arithmetic equals [`AdamWReference`], a plain in-memory
//! AdamW.

mod adamw;
mod manifest;
mod offload;
mod step;

pub use adamw::{AdamW, AdamWReference};
pub use offload::{OffloadSettings, OptimizerOffload, StepReport};
