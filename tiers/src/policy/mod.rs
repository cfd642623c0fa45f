//! Eviction policies. The pager keeps, for every copy, when it was last
//! used and how often; a [`Policy`] turns that into a rank, and the pager
//! evicts the evictable copy (not pinned, no transfer in flight) with the
//! lowest rank first.
//!
//! Built in: [`Lru`], [`FrequencyAware`] and [`ClassPriority`]. Write your
//! own by implementing [`Policy`] and passing it to
//! [`crate::Pager::with_policy`].

mod class;
mod frequency;
mod lru;
#[cfg(test)]
mod test;

pub use class::ClassPriority;
pub use frequency::FrequencyAware;
pub use lru::Lru;

use crate::config::PolicyKind;
use crate::object::{ObjectClass, ObjectId};
use crate::tier::Tier;

/// What a policy knows about one evictable copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The object.
    pub id: ObjectId,
    /// Its class.
    pub class: ObjectClass,
    /// Its priority (higher: keep longer).
    pub priority: u8,
    /// Its size in bytes.
    pub size: usize,
    /// The tier the copy is in.
    pub tier: Tier,
    /// The pager's clock at the copy's last use (creation, pin or fetch).
    pub last_use: u64,
    /// How often the copy was used since it was made.
    pub uses: u64,
    /// Whether evicting it needs a write-back first.
    pub dirty: bool,
}

/// An eviction policy: lower rank is evicted first.
pub trait Policy: Send + 'static {
    /// A short name for stats and logs.
    fn name(&self) -> &'static str;

    /// The rank of `c` at clock `now` (the pager's clock counts uses, one
    /// tick per pin or fetch). Lower ranks are evicted first; NaN ranks
    /// last.
    fn rank(&self, c: &Candidate, now: u64) -> f64;
}

/// The built-in policy `kind` with its default settings.
pub fn builtin(kind: PolicyKind) -> Box<dyn Policy> {
    match kind {
        PolicyKind::Lru => Box::new(Lru),
        PolicyKind::Frequency => Box::new(FrequencyAware::default()),
        PolicyKind::ClassPriority => Box::new(ClassPriority::default()),
    }
}
