//! The NVMe tier's data file: opened O_DIRECT where the file system takes
//! it, reopened buffered when it does not, removed when dropped (unless it
//! is a named, persistent file).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Toggle;
use crate::error::{Result, TierError};

/// One pager's data file.
#[derive(Debug)]
pub(crate) struct DataFile {
    file: File,
    path: PathBuf,
    direct: bool,
    /// A named file (`nvme.file`): kept when dropped.
    keep: bool,
}

static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

impl DataFile {
    /// Creates a new, uniquely named data file in `dir` (creating `dir`),
    /// or, with `named`, opens that file (created when missing, never
    /// truncated) and keeps it on drop. Returns the file and, when O_DIRECT
    /// was wanted but refused, why.
    pub(crate) fn create(dir: &Path, direct: Toggle, named: Option<&Path>) -> Result<(Self, Option<String>)> {
        std::fs::create_dir_all(dir).map_err(|e| TierError::Io {
            op: "create folder",
            path: dir.to_path_buf(),
            offset: 0,
            len: 0,
            source: e,
        })?;
        let keep = named.is_some();
        let path = match named {
            Some(p) => p.to_path_buf(),
            None => {
                let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
                dir.join(format!("pager-{}-{n}.data", std::process::id()))
            }
        };
        let open = |flags: i32| {
            let mut o = OpenOptions::new();
            o.read(true).write(true).custom_flags(flags);
            if keep {
                o.create(true);
            } else {
                o.create_new(true);
            }
            o.open(&path)
        };
        if direct != Toggle::Off {
            match open(libc::O_DIRECT) {
                Ok(file) => return Ok((DataFile { file, path, direct: true, keep }, None)),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && direct == Toggle::Auto => {
                    let why = format!("O_DIRECT refused by the file system of {} ({e})", dir.display());
                    let file = open(0).map_err(|e| open_err(&path, e))?;
                    return Ok((DataFile { file, path, direct: false, keep }, Some(why)));
                }
                Err(e) => return Err(open_err(&path, e)),
            }
        }
        let file = open(0).map_err(|e| open_err(&path, e))?;
        Ok((DataFile { file, path, direct: false, keep }, None))
    }

    /// Reopens the file without O_DIRECT (after a request was refused with
    /// EINVAL).
    pub(crate) fn reopen_buffered(&mut self) -> Result<()> {
        let file = OpenOptions::new().read(true).write(true).open(&self.path).map_err(|e| open_err(&self.path, e))?;
        self.file = file;
        self.direct = false;
        Ok(())
    }

    /// The descriptor for I/O.
    pub(crate) fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the descriptor was opened O_DIRECT.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    /// Forces written data to the device (fdatasync).
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| TierError::Io {
            op: "fdatasync",
            path: self.path.clone(),
            offset: 0,
            len: 0,
            source: e,
        })
    }
}

fn open_err(path: &Path, e: std::io::Error) -> TierError {
    TierError::Io { op: "open", path: path.to_path_buf(), offset: 0, len: 0, source: e }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        // The data dies with the pager unless the file is named (persistent);
        // a missing file is not an error here.
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
