//! What the machine offers: available memory, free disk, the memlock limit.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// MemAvailable from /proc/meminfo, or free physical pages where that file
/// is missing.
pub(crate) fn available_memory_bytes() -> u64 {
    if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("MemAvailable:") {
                let kib = rest.trim().trim_end_matches("kB").trim();
                if let Ok(k) = kib.parse::<u64>() {
                    return k * 1024;
                }
            }
        }
    }
    // SAFETY: sysconf reads a system value and has no memory effects.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_AVPHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    u64::try_from(pages).unwrap_or(0).saturating_mul(u64::try_from(page).unwrap_or(4096))
}

/// Bytes free to an unprivileged user on the file system holding `dir`.
pub(crate) fn free_disk_bytes(dir: &Path) -> std::io::Result<u64> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: statvfs is plain old data; all-zero bits are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out pointer for
    // the duration of the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The field types differ across targets (u32 on some, u64 here).
    #[allow(clippy::useless_conversion)]
    let (avail, frsize) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    Ok(avail.saturating_mul(frsize))
}

/// The soft RLIMIT_MEMLOCK in bytes (`u64::MAX` when unlimited).
pub(crate) fn memlock_limit_bytes() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rl` is a valid out pointer for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } != 0 {
        return 0;
    }
    if rl.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        rl.rlim_cur
    }
}
