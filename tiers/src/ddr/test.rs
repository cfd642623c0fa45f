use super::*;

#[test]
fn blocks_are_page_aligned_zeroed_and_padded() {
    for len in [1usize, 4095, 4096, 4097, 100_000] {
        let mut b = HostBlock::new(len).unwrap();
        assert_eq!(b.len(), len);
        assert_eq!(b.padded_len(), len.div_ceil(HOST_ALIGN) * HOST_ALIGN);
        assert_eq!(b.bytes().as_ptr() as usize % HOST_ALIGN, 0);
        assert!(b.padded().iter().all(|&x| x == 0));
        assert!(!b.is_pinned());
        b.bytes_mut().fill(7);
        assert!(b.padded()[len..].iter().all(|&x| x == 0));
        b.padded_mut().fill(9);
        b.clear_padding();
        assert!(b.bytes().iter().all(|&x| x == 9));
        assert!(b.padded()[len..].iter().all(|&x| x == 0));
    }
}

#[test]
fn huge_allocations_fail_with_an_error() {
    let e = HostBlock::new(usize::MAX / 2).unwrap_err();
    assert!(matches!(e, crate::TierError::HostAlloc { .. }), "{e}");
}

#[test]
fn staging_blocks_are_reused_by_size() {
    let store = DdrStore::new(None);
    let a = store.staging(10_000).unwrap();
    let ptr = a.bytes().as_ptr();
    store.give_back(a);
    let b = store.staging(10_000).unwrap();
    assert_eq!(b.bytes().as_ptr(), ptr, "same block back from the pool");
    let c = store.staging(20_000).unwrap();
    assert_eq!(c.len(), 20_000);
    assert!(!store.pinned());
}

#[test]
fn freed_blocks_are_reused_cleared_and_trimmed() {
    let store = DdrStore::new(None);
    let mut b = store.alloc(5000).unwrap();
    b.bytes_mut().fill(0xAB);
    let ptr = b.bytes().as_ptr();
    store.recycle(b);
    assert_eq!(store.kept_bytes(), 8192);
    // Same page count, different length: reused, zeroed.
    let b = store.alloc(8000).unwrap();
    assert_eq!((b.bytes().as_ptr(), b.len(), store.kept_bytes()), (ptr, 8000, 0));
    assert!(b.padded().iter().all(|&x| x == 0));
    store.recycle(b);
    // For overwrite: stale bytes allowed, padding zero.
    let mut b = store.alloc_for_overwrite(4097).unwrap();
    assert_eq!(b.bytes().as_ptr(), ptr);
    b.padded_mut().fill(1);
    store.recycle(b);
    let b = store.alloc_for_overwrite(4097).unwrap();
    assert!(b.padded()[4097..].iter().all(|&x| x == 0));
    store.recycle(b);
    store.recycle(store.alloc(4096).unwrap());
    store.recycle(store.alloc(3 * 4096).unwrap());
    assert_eq!(store.kept_bytes(), 8192 + 4096 + 12288);
    // Trim to 12 KiB sparing 8 KiB blocks: the others go first, largest
    // first, until the budget holds.
    store.trim(12288, 8192);
    assert_eq!(store.kept_bytes(), 8192 + 4096);
    store.trim(8192, 8192);
    assert_eq!(store.kept_bytes(), 8192);
    assert!(store.free.take(8192).is_some());
    store.trim(0, 0);
    assert_eq!(store.kept_bytes(), 0);
}
