//! Helpers shared by the integration tests: pagers in temp folders and
//! recognisable object contents.
#![allow(dead_code)]

use memwall_tiers::config::{IoEngineChoice, Toggle};
use memwall_tiers::nvme::FaultInjector;
use memwall_tiers::{Config, ObjectClass, ObjectId, ObjectSpec, Pager};

/// A pager, its fault injector and the folder holding its data file.
pub struct TestPager {
    pub pager: Pager,
    pub faults: FaultInjector,
    pub dir: tempfile::TempDir,
}

/// A config with DDR of `ddr` bytes, NVMe of `nvme` bytes, no HBM, small
/// blocks, in a fresh temp folder.
pub fn config(ddr: u64, nvme: u64) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut c = Config::small(dir.path(), ddr, nvme);
    c.nvme.block_size = 16 << 10;
    c.nvme.queue_depth = 4;
    (c, dir)
}

/// Builds a pager from `config` after `tweak`.
pub fn pager_with(ddr: u64, nvme: u64, tweak: impl FnOnce(&mut Config)) -> TestPager {
    let (mut c, dir) = config(ddr, nvme);
    tweak(&mut c);
    let faults = c.nvme.faults.clone();
    let pager = Pager::new(c).expect("pager");
    TestPager { pager, faults, dir }
}

/// A pager with the default I/O path.
pub fn pager(ddr: u64, nvme: u64) -> TestPager {
    pager_with(ddr, nvme, |_| {})
}

/// The two NVMe I/O paths every fault test runs on.
pub fn io_paths() -> [(&'static str, IoEngineChoice); 2] {
    [("io_uring", IoEngineChoice::Auto), ("pread", IoEngineChoice::Pread)]
}

/// Turns O_DIRECT off (for tests that need it).
pub fn buffered(c: &mut Config) {
    c.nvme.direct = Toggle::Off;
}

/// `len` bytes that depend on `id` and `seed` at every position.
pub fn content(id: u64, seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).wrapping_add(id * 131 + seed * 7).to_le_bytes()[1])
        .collect()
}

/// Registers `id` with `len` bytes and inserts `content(id, seed, len)`.
pub fn put(p: &Pager, id: u64, len: usize, seed: u64) -> Vec<u8> {
    p.register(ObjectSpec::new(id, len, ObjectClass::Other)).expect("register");
    let data = content(id, seed, len);
    p.insert(ObjectId(id), &data).expect("insert");
    data
}
