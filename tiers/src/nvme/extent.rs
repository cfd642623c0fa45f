//! Where extents live in the data file: a first-fit allocator over aligned
//! byte ranges, coalescing freed neighbours.

use std::collections::BTreeMap;

/// Free ranges of the data file, and its end.
#[derive(Debug, Default)]
pub(crate) struct ExtentAllocator {
    /// offset -> length of each free range, none touching another.
    free: BTreeMap<u64, u64>,
    /// One past the last byte ever handed out.
    end: u64,
}

impl ExtentAllocator {
    /// The offset of `len` free bytes (first fit, else at the end).
    pub(crate) fn alloc(&mut self, len: u64) -> u64 {
        let fit = self.free.iter().find(|(_, &l)| l >= len).map(|(&o, &l)| (o, l));
        if let Some((off, flen)) = fit {
            self.free.remove(&off);
            if flen > len {
                self.free.insert(off + len, flen - len);
            }
            return off;
        }
        let off = self.end;
        self.end += len;
        off
    }

    /// Marks `len` bytes at `off` as in use (an extent adopted from an
    /// earlier pager's file). Fails, changing nothing, when any of them is
    /// in use already.
    pub(crate) fn reserve(&mut self, off: u64, len: u64) -> Result<(), &'static str> {
        let end = off.checked_add(len).ok_or("offset + length overflows")?;
        if off >= self.end {
            let gap = (self.end, off - self.end);
            self.end = end;
            if gap.1 > 0 {
                // The gap before the extent becomes free space.
                self.free(gap.0, gap.1);
            }
            return Ok(());
        }
        let (&foff, &flen) = self.free.range(..=off).next_back().ok_or("overlaps an extent in use")?;
        if foff + flen < end {
            return Err("overlaps an extent in use");
        }
        self.free.remove(&foff);
        if off > foff {
            self.free.insert(foff, off - foff);
        }
        if foff + flen > end {
            self.free.insert(end, foff + flen - end);
        }
        Ok(())
    }

    /// Returns `len` bytes at `off`, merging with free neighbours; a range
    /// ending at the end of the file shrinks the file's extent instead.
    pub(crate) fn free(&mut self, off: u64, len: u64) {
        let (mut off, mut len) = (off, len);
        if let Some((&prev, &plen)) = self.free.range(..off).next_back() {
            if prev + plen == off {
                self.free.remove(&prev);
                off = prev;
                len += plen;
            }
        }
        if let Some(&nlen) = self.free.get(&(off + len)) {
            self.free.remove(&(off + len));
            len += nlen;
        }
        if off + len == self.end {
            self.end = off;
        } else {
            self.free.insert(off, len);
        }
    }

    /// One past the last byte in use or free-but-inside the file.
    #[cfg(test)]
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Bytes inside `end` that are free.
    #[cfg(test)]
    pub(crate) fn free_bytes(&self) -> u64 {
        self.free.values().sum()
    }
}
