//! The `key = value` text form of [`Config`].

use std::path::PathBuf;

use super::{Capacity, Config, IoEngineChoice, PolicyKind, Toggle};
use crate::error::{Result, TierError};

/// Applies every `key = value` line of `text` to `config`.
pub(super) fn apply(config: &mut Config, text: &str) -> Result<()> {
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(TierError::config(format!("line {}", n + 1), raw, "expected `key = value`"));
        };
        set(config, key.trim(), unquote(value.trim()))?;
    }
    Ok(())
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v)
}

fn set(c: &mut Config, key: &str, value: &str) -> Result<()> {
    match key {
        "hbm.enabled" => c.hbm.enabled = toggle(key, value)?,
        "hbm.device" => c.hbm.device = number(key, value)?,
        "hbm.capacity" => c.hbm.capacity = capacity(key, value)?,
        "ddr.capacity" => c.ddr.capacity = capacity(key, value)?,
        "ddr.pinned" => c.ddr.pinned = toggle(key, value)?,
        "nvme.dir" => c.nvme.dir = dir(key, value)?,
        "nvme.file" => c.nvme.file = if value == "none" { None } else { Some(dir(key, value)?) },
        "nvme.capacity" => c.nvme.capacity = capacity(key, value)?,
        "nvme.io" => {
            c.nvme.io = match value {
                "auto" => IoEngineChoice::Auto,
                "io_uring" => IoEngineChoice::IoUring,
                "pread" => IoEngineChoice::Pread,
                _ => return Err(TierError::config(key, value, "expected auto, io_uring or pread")),
            }
        }
        "nvme.direct" => c.nvme.direct = toggle(key, value)?,
        "nvme.queue_depth" => c.nvme.queue_depth = number(key, value)?,
        "nvme.lanes" => c.nvme.lanes = if value == "auto" { None } else { Some(number(key, value)?) },
        "nvme.block_size" => c.nvme.block_size = size(key, value)?,
        "nvme.register_buffers" => {
            c.nvme.register_buffers = match toggle(key, value)? {
                Toggle::Off => false,
                Toggle::On | Toggle::Auto => true,
            }
        }
        "nvme.memlock_budget" => {
            c.nvme.memlock_budget = match capacity(key, value)? {
                Capacity::Auto => None,
                Capacity::Bytes(b) => Some(b),
            }
        }
        "policy" => {
            c.policy = match value {
                "lru" => PolicyKind::Lru,
                "frequency" => PolicyKind::Frequency,
                "class" => PolicyKind::ClassPriority,
                _ => return Err(TierError::config(key, value, "expected lru, frequency or class")),
            }
        }
        "prefetch_workers" => c.prefetch_workers = number(key, value)?,
        _ => return Err(TierError::config(key, value, "unknown key")),
    }
    Ok(())
}

fn toggle(key: &str, value: &str) -> Result<Toggle> {
    match value {
        "auto" => Ok(Toggle::Auto),
        "on" | "true" | "yes" => Ok(Toggle::On),
        "off" | "false" | "no" => Ok(Toggle::Off),
        _ => Err(TierError::config(key, value, "expected auto, on or off")),
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value.parse().map_err(|_| TierError::config(key, value, "expected a non-negative integer"))
}

fn dir(key: &str, value: &str) -> Result<PathBuf> {
    if value.is_empty() {
        return Err(TierError::config(key, value, "must name a folder"));
    }
    let temp = std::env::temp_dir();
    Ok(PathBuf::from(value.replace("{temp}", &temp.to_string_lossy())))
}

fn capacity(key: &str, value: &str) -> Result<Capacity> {
    if value == "auto" {
        return Ok(Capacity::Auto);
    }
    Ok(Capacity::Bytes(size::<u64>(key, value)?))
}

/// Parses `123`, `4KiB`, `1 MiB`, `2G`, ... into bytes.
pub(crate) fn size<T: TryFrom<u64>>(key: &str, value: &str) -> Result<T> {
    let bad = || TierError::config(key, value, "expected bytes, optionally with a KiB/MiB/GiB/TiB suffix");
    let digits = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (num, unit) = value.split_at(digits);
    let num: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => return Err(bad()),
    };
    let bytes = num.checked_mul(1u64 << shift).ok_or_else(|| TierError::config(key, value, "overflows 64 bits"))?;
    T::try_from(bytes).map_err(|_| TierError::config(key, value, "too large for this machine"))
}
