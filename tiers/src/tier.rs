//! The three tiers, fastest first.

use std::fmt;

/// A level of the memory hierarchy. Ordered fastest (and smallest) first, so
/// `Tier::Hbm < Tier::Ddr < Tier::Nvme`; write-back goes to the next tier
/// down ([`Tier::below`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// GPU device memory (HBM), through cudarc. Absent on a CPU-only machine.
    Hbm,
    /// Host memory: pinned when a GPU is in use, page-aligned otherwise.
    Ddr,
    /// Files on local storage, read and written with O_DIRECT where the file
    /// system allows it.
    Nvme,
}

impl Tier {
    /// Every tier, fastest first.
    pub const ALL: [Tier; 3] = [Tier::Hbm, Tier::Ddr, Tier::Nvme];

    /// Position in [`Tier::ALL`] (0 for HBM, 2 for NVMe).
    pub fn index(self) -> usize {
        match self {
            Tier::Hbm => 0,
            Tier::Ddr => 1,
            Tier::Nvme => 2,
        }
    }

    /// The next slower tier, where a dirty copy is written back before it is
    /// dropped; `None` for NVMe, the last one.
    pub fn below(self) -> Option<Tier> {
        match self {
            Tier::Hbm => Some(Tier::Ddr),
            Tier::Ddr => Some(Tier::Nvme),
            Tier::Nvme => None,
        }
    }

    /// Whether the host can read a copy in this tier directly (DDR only).
    pub fn host_visible(self) -> bool {
        self == Tier::Ddr
    }

    /// Lower-case name, as used in the config and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Hbm => "hbm",
            Tier::Ddr => "ddr",
            Tier::Nvme => "nvme",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Hbm => "HBM",
            Tier::Ddr => "DDR",
            Tier::Nvme => "NVMe",
        })
    }
}
