//! Committed types memwall packs, cached per handle from `MPI_Type_commit`
//! to `MPI_Type_free`.

use std::ffi::c_int;
use std::sync::{Arc, PoisonError, RwLock};

use memwall::datatype::{Committed, Datatype};

use crate::decode::Unsupported;
use crate::handle_map::HandleMap;

/// A cached type.
#[derive(Debug)]
pub struct Entry {
    /// The engine's committed form.
    pub committed: Committed,
    /// Any number of elements is one contiguous run: sending it needs no
    /// pack, so sends and receives stay with the library.
    pub dense: bool,
}

impl Entry {
    /// Commits `t` in the engine.
    pub fn new(t: &Datatype) -> Result<Self, Unsupported> {
        let committed = Committed::new(t).map_err(|e| Unsupported(format!("engine commit: {e}")))?;
        // Two consecutive elements in one run means every count is one run.
        let dense = t.size() > 0
            && t.extent() == t.size()
            && committed.layout_for(2).is_ok_and(|l| l.is_contiguous())
            && t.true_lb() == t.lb();
        Ok(Entry { committed, dense })
    }

    /// Packed bytes of `count` elements, when they fit an MPI `int` count.
    pub fn bytes(&self, count: c_int) -> Option<usize> {
        let n = self.committed.pack_size(i64::from(count)).ok()?;
        (n <= c_int::MAX as usize).then_some(n)
    }
}

/// Handle (as u64) to cached type.
#[derive(Debug, Default)]
pub struct TypeCache {
    map: RwLock<HandleMap<Arc<Entry>>>,
}

impl TypeCache {
    /// The entry of handle `h`, if memwall handles it.
    pub fn get(&self, h: u64) -> Option<Arc<Entry>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner).get(&h).cloned()
    }

    /// Caches `e` for `h` (a recommit replaces it).
    pub fn insert(&self, h: u64, e: Entry) {
        self.map.write().unwrap_or_else(PoisonError::into_inner).insert(h, Arc::new(e));
    }

    /// Drops `h`'s entry; whether there was one.
    pub fn remove(&self, h: u64) -> bool {
        self.map.write().unwrap_or_else(PoisonError::into_inner).remove(&h).is_some()
    }

    /// Cached types.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether none is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.map.write().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwall::datatype::Primitive;

    #[test]
    fn dense_only_when_runs_join() {
        let d = Datatype::named(Primitive::F64);
        assert!(Entry::new(&d.contiguous(4).unwrap()).unwrap().dense);
        assert!(!Entry::new(&d.vector(4, 1, 2).unwrap()).unwrap().dense);
        assert!(!Entry::new(&d.resized(0, 16).unwrap()).unwrap().dense);
        assert!(!Entry::new(&d.resized(-8, 8).unwrap()).unwrap().dense);
    }

    #[test]
    fn cache_insert_get_remove() {
        let c = TypeCache::default();
        c.insert(7, Entry::new(&Datatype::byte().vector(2, 1, 2).unwrap()).unwrap());
        assert_eq!(c.get(7).unwrap().bytes(3), Some(6));
        assert!(c.remove(7));
        assert!(!c.remove(7));
        assert!(c.get(7).is_none() && c.is_empty());
    }

    #[test]
    fn byte_counts_must_fit_an_int() {
        let e = Entry::new(&Datatype::byte().vector(2, 1024, 2048).unwrap()).unwrap();
        assert_eq!(e.bytes(c_int::MAX), None);
        assert_eq!(e.bytes(0), Some(0));
    }
}
