//! What the pager holds: objects, their classes and priorities.

use std::fmt;

use crate::tier::Tier;

/// The caller's name for an object. Clients choose ids (an expert's
/// `(layer, expert)` packed into 64 bits, a KV block number, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub u64);

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "object {}", self.0)
    }
}

/// What kind of data an object is. Policies may treat classes differently
/// (see [`crate::policy::ClassPriority`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectClass {
    /// MoE expert weights: read-mostly, reused across steps.
    Expert,
    /// Optimizer state (moments, master weights): touched once a step.
    OptimizerState,
    /// A block of the paged KV cache.
    KvBlock,
    /// Anything else.
    Other,
}

impl ObjectClass {
    /// Every class.
    pub const ALL: [ObjectClass; 4] =
        [ObjectClass::Expert, ObjectClass::OptimizerState, ObjectClass::KvBlock, ObjectClass::Other];
}

/// How to register an object with [`crate::Pager::register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectSpec {
    /// The object's id, unique in the pager.
    pub id: ObjectId,
    /// Size in bytes (at least 1).
    pub size: usize,
    /// What kind of data it is.
    pub class: ObjectClass,
    /// Higher keeps it resident longer under [`crate::policy::ClassPriority`];
    /// other policies may ignore it.
    pub priority: u8,
}

impl ObjectSpec {
    /// A spec with priority 0.
    pub fn new(id: u64, size: usize, class: ObjectClass) -> Self {
        ObjectSpec { id: ObjectId(id), size, class, priority: 0 }
    }

    /// The same spec with `priority`.
    pub fn with_priority(self, priority: u8) -> Self {
        ObjectSpec { priority, ..self }
    }
}

/// Where an object's copies are, from [`crate::Pager::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStatus {
    /// The spec it was registered with.
    pub spec: ObjectSpec,
    /// Tiers holding a current copy, fastest first.
    pub resident: Vec<Tier>,
    /// Tiers (HBM, DDR) whose copy is dirty: no slower tier holds the data,
    /// so the copy is written back before it is dropped. NVMe copies are
    /// never dirty.
    pub dirty: Vec<Tier>,
    /// Tiers where the copy is pinned now.
    pub pinned: Vec<Tier>,
    /// Whether a transfer of this object is in flight.
    pub busy: bool,
}

impl ObjectStatus {
    /// Whether a current copy is in `tier`.
    pub fn is_in(&self, tier: Tier) -> bool {
        self.resident.contains(&tier)
    }
}
