//! [`OptimizerOffload`]: the state in pager objects, its creation and the
//! restart from the manifest. The step is in `step.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::{ClientError, Result, OPTIMIZER_ID_BASE};
use super::adamw::AdamW;
use super::manifest::{Manifest, MANIFEST};
use crate::config::Config;
use crate::ddr::padded_len;
use crate::error::TierError;
use crate::object::{ObjectClass, ObjectId, ObjectSpec};
use crate::pager::Pager;
use crate::tier::Tier;

/// The data file's name in the state folder.
const DATA_FILE: &str = "state.data";
/// Ids of the two generations are this far apart.
const GENERATION_STRIDE: u64 = 1 << 40;
/// Partition writes in flight at once during a step.
pub(super) const WRITES_IN_FLIGHT: usize = 1;
/// Partitions read ahead of the one being computed.
pub(super) const READ_AHEAD: usize = 2;
/// DDR must hold this many partitions: the one read, the one written, those
/// read ahead, the last one being written back, and one spare so that
/// eviction always finds a clean copy.
const DDR_PARTITIONS: u64 = 3 + READ_AHEAD as u64 + WRITES_IN_FLIGHT as u64;
/// Prefetch workers the state's pager gets at least: the reads ahead and
/// the writes in flight each on their own.
const MIN_WORKERS: usize = READ_AHEAD + WRITES_IN_FLIGHT + 1;

/// How [`OptimizerOffload::create`] lays out and runs the optimizer.
#[derive(Debug, Clone)]
pub struct OffloadSettings {
    /// The pager's configuration. Its NVMe data file is set to
    /// `state.data` in the state folder (persistent), and it gets at least
    /// four prefetch workers; DDR must hold six partitions.
    pub pager: Config,
    /// Elements per partition (the last one may be shorter).
    pub partition_elems: usize,
    /// The hyperparameters.
    pub adamw: AdamW,
    /// Threads of the CPU step; 0: every core.
    pub threads: usize,
    /// The object id of generation 0's partition 0.
    pub id_base: u64,
}

impl OffloadSettings {
    /// `pager`, partitions of `partition_elems`, AdamW's defaults, every
    /// core, ids from [`OPTIMIZER_ID_BASE`].
    pub fn new(pager: Config, partition_elems: usize) -> Self {
        OffloadSettings { pager, partition_elems, adamw: AdamW::default(), threads: 0, id_base: OPTIMIZER_ID_BASE }
    }
}

/// What one [`OptimizerOffload::step`] did and how long each part took.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepReport {
    /// The step number now (1 after the first step).
    pub step: u64,
    /// Wall time of the whole step, commit included.
    pub elapsed: Duration,
    /// Time waiting for partitions to arrive in DDR.
    pub read_wait: Duration,
    /// Time in the AdamW arithmetic and checksums.
    pub compute: Duration,
    /// Time waiting for partition writes and the fdatasync.
    pub write_wait: Duration,
    /// Time writing the manifest.
    pub commit: Duration,
    /// Bytes of state read (each partition once).
    pub state_bytes: u64,
}

/// ZeRO-Infinity-style AdamW offload (see the module docs).
#[derive(Debug)]
pub struct OptimizerOffload {
    pub(super) pager: Pager,
    pub(super) dir: PathBuf,
    pub(super) manifest: Manifest,
    pub(super) threads: usize,
}

fn all_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// `pager` configured for the state folder `dir`.
fn state_pager(mut config: Config, dir: &Path, block_size: Option<usize>) -> Result<Pager> {
    config.nvme.dir = dir.to_path_buf();
    config.nvme.file = Some(dir.join(DATA_FILE));
    config.prefetch_workers = config.prefetch_workers.max(MIN_WORKERS);
    if let Some(b) = block_size {
        config.nvme.block_size = b;
    }
    Ok(Pager::new(config)?)
}

impl OptimizerOffload {
    /// Creates the state in the empty (or new) folder `dir` from `params`
    /// (master weights; moments zero, step 0) and commits it, so a crash
    /// from here on restarts from it. Errors: state already in `dir`
    /// ([`ClientError::StateExists`]), bad settings, I/O.
    pub fn create(dir: &Path, settings: OffloadSettings, params: &[f32]) -> Result<Self> {
        settings.adamw.validate()?;
        if params.is_empty() {
            return Err(ClientError::invalid("params", 0, "at least one parameter"));
        }
        if settings.partition_elems == 0 {
            return Err(ClientError::invalid("partition_elems", 0, "must be at least 1"));
        }
        let manifest_path = dir.join(MANIFEST);
        if manifest_path.exists() {
            return Err(ClientError::StateExists { dir: dir.to_path_buf(), manifest: manifest_path });
        }
        std::fs::create_dir_all(dir).map_err(|e| ClientError::io("create folder", dir, e))?;
        let data = dir.join(DATA_FILE);
        match std::fs::remove_file(&data) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ClientError::io("remove stale", &data, e))
            }
            _ => {}
        }
        let block_size = settings.pager.nvme.block_size;
        let pager = state_pager(settings.pager, dir, None)?;
        let manifest = Manifest {
            elements: params.len(),
            partition_elems: settings.partition_elems,
            step: 0,
            generation: 0,
            id_base: settings.id_base,
            adamw: settings.adamw,
            data_file: DATA_FILE.into(),
            block_size,
            parts: Vec::new(),
        };
        let threads = if settings.threads == 0 { all_cores() } else { settings.threads };
        let mut this = OptimizerOffload { pager, dir: dir.to_path_buf(), manifest, threads };
        this.check_ddr()?;
        let mut crcs = Vec::with_capacity(this.partitions());
        for i in 0..this.partitions() {
            let id = this.register(0, i, 0)?;
            let range = this.range(i);
            let mut pin = this.pager.pin_mut(id, Tier::Ddr).map_err(|source| this.part_err(i, 0, source))?;
            let state = pin.view_mut::<f32>().map_err(|source| this.part_err(i, 0, source))?;
            state[..range.len()].copy_from_slice(&params[range]);
            crcs.push(crc32fast::hash(pin.bytes().map_err(|source| this.part_err(i, 0, source))?));
        }
        match this.write_generation(0, 0, crcs)? {
            None => Ok(this),
            Some(e) => Err(e),
        }
    }

    /// Restores the state committed in `dir`: reads the manifest (its own
    /// checksum verified), adopts each partition's extent in the data file,
    /// and reads every partition back, checking it against the manifest's
    /// checksum. Errors name the file, line or partition that does not
    /// match ([`ClientError::Manifest`], [`ClientError::ManifestChecksum`],
    /// [`ClientError::StateChecksum`], [`ClientError::Partition`]).
    pub fn open(dir: &Path, pager: Config) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let data = manifest.data_path(dir);
        let needed = manifest.parts.iter().map(|p| p.extent.offset + p.extent.len).max().unwrap_or(0);
        let have = std::fs::metadata(&data).map_err(|e| ClientError::io("stat", &data, e))?.len();
        if have < needed {
            return Err(ClientError::Manifest {
                path: dir.join(MANIFEST),
                line: 0,
                reason: format!("data file {} is {have} bytes, the manifest needs {needed}", data.display()),
            });
        }
        let pager = state_pager(pager, dir, Some(manifest.block_size))?;
        let this = OptimizerOffload { pager, dir: dir.to_path_buf(), manifest, threads: all_cores() };
        this.check_ddr()?;
        let (step, generation) = (this.manifest.step, this.manifest.generation);
        for (i, part) in this.manifest.parts.iter().enumerate() {
            let spec = this.spec(generation, i);
            this.pager.adopt(spec, &part.extent).map_err(|source| this.part_err(i, step, source))?;
        }
        for (i, part) in this.manifest.parts.iter().enumerate() {
            let pin =
                this.pager.pin(this.id(generation, i), Tier::Ddr).map_err(|source| this.part_err(i, step, source))?;
            let found = crc32fast::hash(pin.bytes().map_err(|source| this.part_err(i, step, source))?);
            if found != part.crc {
                return Err(ClientError::StateChecksum { partition: i, path: data, step, expected: part.crc, found });
            }
        }
        Ok(this)
    }

    /// The same offload with the CPU step on `threads` threads (0: every
    /// core).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = if threads == 0 { all_cores() } else { threads };
        self
    }

    /// Parameters.
    pub fn len(&self) -> usize {
        self.manifest.elements
    }

    /// Whether there are no parameters (never: `create` refuses that).
    pub fn is_empty(&self) -> bool {
        self.manifest.elements == 0
    }

    /// Steps taken (and committed).
    pub fn steps(&self) -> u64 {
        self.manifest.step
    }

    /// Partitions.
    pub fn partitions(&self) -> usize {
        self.manifest.elements.div_ceil(self.manifest.partition_elems)
    }

    /// The hyperparameters.
    pub fn adamw(&self) -> AdamW {
        self.manifest.adamw
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pager holding the state (for statistics).
    pub fn pager(&self) -> &Pager {
        &self.pager
    }

    /// Bytes of state (master weights and both moments).
    pub fn state_bytes(&self) -> u64 {
        12 * self.manifest.elements as u64
    }

    pub(super) fn range(&self, i: usize) -> std::ops::Range<usize> {
        let p = self.manifest.partition_elems;
        i * p..((i + 1) * p).min(self.manifest.elements)
    }

    pub(super) fn id(&self, generation: u64, i: usize) -> ObjectId {
        ObjectId(self.manifest.id_base + (generation % 2) * GENERATION_STRIDE + i as u64)
    }

    fn spec(&self, generation: u64, i: usize) -> ObjectSpec {
        ObjectSpec::new(self.id(generation, i).0, 12 * self.range(i).len(), ObjectClass::OptimizerState)
    }

    pub(super) fn register(&self, generation: u64, i: usize, step: u64) -> Result<ObjectId> {
        let spec = self.spec(generation, i);
        self.pager.register(spec).map_err(|source| self.part_err(i, step, source))?;
        Ok(spec.id)
    }

    pub(super) fn part_err(&self, partition: usize, step: u64, source: TierError) -> ClientError {
        ClientError::Partition { partition, step, source: Box::new(source) }
    }

    fn check_ddr(&self) -> Result<()> {
        let part = padded_len(12 * self.manifest.partition_elems.min(self.manifest.elements)) as u64;
        let ddr = self.pager.capacity(Tier::Ddr);
        if ddr < DDR_PARTITIONS * part {
            return Err(ClientError::invalid(
                "ddr.capacity",
                ddr,
                format!("must hold {DDR_PARTITIONS} partitions of {part} bytes: lower partition_elems"),
            ));
        }
        Ok(())
    }

    /// Reads every partition's `[master | m | v]` section `section` (0, 1, 2).
    fn gather(&self, section: usize) -> Result<Vec<f32>> {
        let (step, generation) = (self.manifest.step, self.manifest.generation);
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.partitions() {
            let n = self.range(i).len();
            let pin =
                self.pager.pin(self.id(generation, i), Tier::Ddr).map_err(|source| self.part_err(i, step, source))?;
            let state = pin.view::<f32>().map_err(|source| self.part_err(i, step, source))?;
            out.extend_from_slice(&state[section * n..(section + 1) * n]);
        }
        Ok(out)
    }

    /// The master weights.
    pub fn master(&self) -> Result<Vec<f32>> {
        self.gather(0)
    }

    /// The first and second moments.
    pub fn moments(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.gather(1)?, self.gather(2)?))
    }
}
