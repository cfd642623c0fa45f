use super::*;

#[test]
fn gpu_hbm_store_round_trips_through_device_memory() {
    let Some(gpu) = memwall::gpu::gpu_or_skip("gpu_hbm_store_round_trips_through_device_memory") else { return };
    let gpu = Arc::new(gpu);
    let store = HbmStore::new(gpu.clone()).unwrap();
    for (pinned, len) in [(false, 1usize), (true, 4097), (true, 3 << 20), (false, 1 << 20)] {
        let mut src = if pinned { HostBlock::pinned(&gpu, len).unwrap() } else { HostBlock::new(len).unwrap() };
        assert_eq!(src.is_pinned(), pinned);
        for (i, b) in src.bytes_mut().iter_mut().enumerate() {
            *b = (i * 31 + 7) as u8;
        }
        let mut dev = store.alloc(len).unwrap();
        assert_eq!(dev.len(), len);
        let stream = dev.slice().stream().clone();
        assert_ne!(dev.device_ptr(&stream).0, 0);
        store.upload(ObjectId(1), &src, &mut dev).unwrap();
        let mut back = HostBlock::new(len).unwrap();
        store.download(ObjectId(1), &dev, &mut back).unwrap();
        assert_eq!(back.bytes(), src.bytes(), "len {len} pinned {pinned}");
    }
    let small = HostBlock::new(10).unwrap();
    let mut dev = store.alloc(11).unwrap();
    let e = store.upload(ObjectId(5), &small, &mut dev).unwrap_err();
    assert!(e.to_string().contains("object 5"), "{e}");
}
