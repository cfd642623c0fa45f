//! Splitting work over all cores, and slices that threads write in
//! disjoint ranges.

/// Runs `f(first, count)` over contiguous ranges of `0..items`, one range
/// per core.
pub(crate) fn parallel_ranges(items: usize, f: impl Fn(usize, usize) + Sync) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.max(1));
    let per = items.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for start in (0..items).step_by(per) {
            let f = &f;
            s.spawn(move || f(start, per.min(items - start)));
        }
    });
}

/// A slice shared by threads that each write disjoint ranges of it.
pub(crate) struct SyncSlice<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: access goes through `slice`, whose callers guarantee that threads
// touch disjoint ranges; T itself is Send.
unsafe impl<T: Send> Sync for SyncSlice<T> {}

/// `slice.sync_slice()`: a [`SyncSlice`] over a mutable slice.
pub(crate) trait SyncSliceExt<T> {
    fn sync_slice(&mut self) -> SyncSlice<T>;
}

impl<T> SyncSliceExt<T> for [T] {
    fn sync_slice(&mut self) -> SyncSlice<T> {
        SyncSlice::new(self)
    }
}

impl<T> SyncSlice<T> {
    pub(crate) fn new(s: &mut [T]) -> Self {
        SyncSlice { ptr: s.as_mut_ptr(), len: s.len() }
    }

    /// `[start, start + len)` of the slice.
    ///
    /// # Safety
    /// No other live reference may overlap the range; the borrow of the
    /// original slice outlives every use.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "range {start}+{len} outside {}", self.len);
        // SAFETY: in bounds (asserted); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}
