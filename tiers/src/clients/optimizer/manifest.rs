//! The optimizer's manifest: what a restart needs to find and verify the
//! state in the pager's data file. Text, one `key values...` a line, the
//! last line a crc32 of everything before it; written to a temp file,
//! synced, renamed over the old one and the folder synced, so a crash
//! leaves either the old manifest or the new one.
//!
//! ```text
//! memwall-optimizer-manifest v1
//! elements 1000000
//! partition_elems 262144
//! step 12
//! generation 0
//! id_base 72057594037927936
//! adamw 3a83126f 3f666666 3f7fbe77 322bcc77 3c23d70a   # f32 bits: lr beta1 beta2 eps weight_decay
//! data_file state.data
//! block_size 1048576
//! part 0 0 3145728 1c2d3e4f 89abcdef,01234567,...       # index offset len crc32 block-crcs
//! crc 0badf00d
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::super::{ClientError, Result};
use super::adamw::AdamW;
use crate::nvme::NvmeExtent;

const HEADER: &str = "memwall-optimizer-manifest v1";
/// The manifest's file name in the state folder.
pub(crate) const MANIFEST: &str = "manifest";
const MANIFEST_TMP: &str = "manifest.tmp";

/// fsync of the folder `dir`, making a rename in it durable.
pub(crate) fn sync_folder(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ClientError::io("fsync folder", dir, e))
}

/// One partition's object on NVMe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartRecord {
    /// Where the object lies in the data file, with its block checksums.
    pub(crate) extent: NvmeExtent,
    /// crc32 of the object's bytes (`[master | m | v]` as f32).
    pub(crate) crc: u32,
}

/// Everything in a manifest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    pub(crate) elements: usize,
    pub(crate) partition_elems: usize,
    pub(crate) step: u64,
    pub(crate) generation: u64,
    pub(crate) id_base: u64,
    pub(crate) adamw: AdamW,
    pub(crate) data_file: String,
    pub(crate) block_size: usize,
    pub(crate) parts: Vec<PartRecord>,
}

fn hex_list(xs: &[u32]) -> String {
    xs.iter().map(|x| format!("{x:08x}")).collect::<Vec<_>>().join(",")
}

impl Manifest {
    /// The text form, checksum line included.
    pub(crate) fn to_text(&self) -> String {
        let a = self.adamw;
        let mut s = format!(
            "{HEADER}\nelements {}\npartition_elems {}\nstep {}\ngeneration {}\nid_base {}\n\
             adamw {:08x} {:08x} {:08x} {:08x} {:08x}\ndata_file {}\nblock_size {}\n",
            self.elements,
            self.partition_elems,
            self.step,
            self.generation,
            self.id_base,
            a.lr.to_bits(),
            a.beta1.to_bits(),
            a.beta2.to_bits(),
            a.eps.to_bits(),
            a.weight_decay.to_bits(),
            self.data_file,
            self.block_size,
        );
        for (i, p) in self.parts.iter().enumerate() {
            let e = &p.extent;
            s.push_str(&format!("part {i} {} {} {:08x} {}\n", e.offset, e.len, p.crc, hex_list(&e.crcs)));
        }
        let crc = crc32fast::hash(s.as_bytes());
        s.push_str(&format!("crc {crc:08x}\n"));
        s
    }

    /// Writes the manifest into `dir` atomically: a temp file, fsync'ed,
    /// renamed over the old manifest. An error here leaves the old manifest
    /// in place. [`sync_folder`] then makes the rename durable.
    pub(crate) fn write_and_rename(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(MANIFEST_TMP);
        let path = dir.join(MANIFEST);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| ClientError::io("create", &tmp, e))?;
        f.write_all(self.to_text().as_bytes()).map_err(|e| ClientError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| ClientError::io("fsync", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| ClientError::io("rename into place", &path, e))
    }

    /// Reads and verifies `dir`'s manifest.
    pub(crate) fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| ClientError::io("read", &path, e))?;
        Manifest::parse(&text, &path)
    }

    /// Parses and verifies the text form; errors name the file and line.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Manifest> {
        let bad = |line: usize, reason: String| ClientError::Manifest { path: path.to_path_buf(), line, reason };
        let body_end = text.trim_end_matches('\n').rfind('\n').map(|i| i + 1).unwrap_or(0);
        let (body, last) = text.split_at(body_end);
        let last_line = body.lines().count() + 1;
        let expected =
            last.trim().strip_prefix("crc ").and_then(|h| u32::from_str_radix(h.trim(), 16).ok()).ok_or_else(|| {
                bad(last_line, format!("expected `crc HEX` as the last line, found {:?}", last.trim()))
            })?;
        let found = crc32fast::hash(body.as_bytes());
        if found != expected {
            return Err(ClientError::ManifestChecksum { path: path.to_path_buf(), expected, found });
        }
        let mut lines = body.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, l)) if l == HEADER => {}
            other => {
                return Err(bad(1, format!("expected {HEADER:?}, found {:?}", other.map(|(_, l)| l).unwrap_or(""))))
            }
        }
        let mut field = |key: &str| -> Result<(usize, Vec<String>)> {
            let (n, l) = lines.next().ok_or_else(|| bad(last_line, format!("missing `{key}`")))?;
            let mut words = l.split_whitespace();
            if words.next() != Some(key) {
                return Err(bad(n, format!("expected `{key} ...`, found {l:?}")));
            }
            Ok((n, words.map(str::to_string).collect()))
        };
        let num = |n: usize, key: &str, w: &[String]| -> Result<u64> {
            match w {
                [v] => v.parse().map_err(|_| bad(n, format!("{key} {v:?} is not a number"))),
                _ => Err(bad(n, format!("{key} takes one number"))),
            }
        };
        let (n, w) = field("elements")?;
        let elements = num(n, "elements", &w)? as usize;
        let (n, w) = field("partition_elems")?;
        let partition_elems = num(n, "partition_elems", &w)? as usize;
        let (n, w) = field("step")?;
        let step = num(n, "step", &w)?;
        let (n, w) = field("generation")?;
        let generation = num(n, "generation", &w)?;
        let (n, w) = field("id_base")?;
        let id_base = num(n, "id_base", &w)?;
        let (n, w) = field("adamw")?;
        let bits: Vec<f32> = w
            .iter()
            .map(|h| u32::from_str_radix(h, 16).map(f32::from_bits))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(n, format!("adamw values {w:?} are not hex f32 bits")))?;
        let [lr, beta1, beta2, eps, weight_decay] = bits[..] else {
            return Err(bad(n, format!("adamw takes 5 values, found {}", bits.len())));
        };
        let adamw = AdamW { lr, beta1, beta2, eps, weight_decay };
        let (n, w) = field("data_file")?;
        let data_file = match &w[..] {
            [f] if !f.contains('/') => f.clone(),
            _ => return Err(bad(n, format!("data_file {w:?} must be one file name in the folder"))),
        };
        let (n, w) = field("block_size")?;
        let block_size = num(n, "block_size", &w)? as usize;
        if partition_elems == 0 || block_size == 0 {
            return Err(bad(0, "partition_elems and block_size must be at least 1".into()));
        }
        let mut parts = Vec::new();
        for (n, l) in lines {
            let w: Vec<&str> = l.split_whitespace().collect();
            let [kw, idx, offset, len, crc, blocks] = w[..] else {
                return Err(bad(n, format!("expected `part INDEX OFFSET LEN CRC BLOCK-CRCS`, found {l:?}")));
            };
            let number = |v: &str| v.parse::<u64>().map_err(|_| bad(n, format!("{v:?} is not a number")));
            let hex = |v: &str| u32::from_str_radix(v, 16).map_err(|_| bad(n, format!("{v:?} is not a hex crc32")));
            if kw != "part" || number(idx)? != parts.len() as u64 {
                return Err(bad(n, format!("expected `part {} ...`, found {l:?}", parts.len())));
            }
            let crcs = blocks.split(',').map(hex).collect::<Result<Vec<u32>>>()?;
            let extent = NvmeExtent { offset: number(offset)?, len: number(len)?, block_size, crcs };
            parts.push(PartRecord { extent, crc: hex(crc)? });
        }
        let want = elements.div_ceil(partition_elems);
        if parts.len() != want {
            return Err(bad(
                0,
                format!("{} parts listed, {elements} elements in {partition_elems}s need {want}", parts.len()),
            ));
        }
        Ok(Manifest { elements, partition_elems, step, generation, id_base, adamw, data_file, block_size, parts })
    }

    /// The data file's path for the manifest in `dir`.
    pub(crate) fn data_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.data_file)
    }
}
