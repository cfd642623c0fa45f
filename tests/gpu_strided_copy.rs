//! The strided-copy kernels on a real GPU, against the CPU path.
//! Skips with a printed reason without a driver; fails instead under
//! `MEMWALL_REQUIRE_GPU=1` (the GPU suite).

use memwall::gpu::{gpu_or_skip, Bind, PinnedKind};
use memwall::strided::StridedCopy;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 + 7) as u8).collect()
}

#[test]
fn gpu_strided_copy_matches_cpu_for_every_word_size() {
    let Some(gpu) = gpu_or_skip("gpu_strided_copy_matches_cpu_for_every_word_size") else { return };
    let stream = gpu.new_stream().unwrap();
    let cases = [
        StridedCopy::pack(1000, 64, 96),    // w16
        StridedCopy::pack(777, 24, 40),     // w8
        StridedCopy::pack(513, 12, 20),     // w4
        StridedCopy::pack(300, 6, 10),      // w2
        StridedCopy::pack(129, 3, 7),       // w1
        StridedCopy::unpack(64, 256, 1024), // scatter
        StridedCopy { rows: 50, row_bytes: 32, src_offset: 49 * 64, src_stride: -64, dst_offset: 16, dst_stride: 48 },
        StridedCopy::pack(1 << 20, 16, 32), // many rows: grid-stride loop
    ];
    for c in cases {
        let (s, d) = c.required_lengths().unwrap();
        let src = pattern(s as usize);
        let mut want = vec![0xEEu8; d as usize];
        c.run_cpu(&src, &mut want).unwrap();
        let dev_src = stream.clone_htod(&src).unwrap();
        let mut dev_dst = stream.clone_htod(&vec![0xEEu8; d as usize]).unwrap();
        c.run_gpu(&gpu, &stream, &dev_src, &mut dev_dst).unwrap();
        let got = stream.clone_dtoh(&dev_dst).unwrap();
        assert!(got == want, "GPU differs from CPU for {c:?}");
    }
}

#[test]
fn gpu_refuses_short_and_misbound_buffers() {
    let Some(gpu) = gpu_or_skip("gpu_refuses_short_and_misbound_buffers") else { return };
    let stream = gpu.default_stream();
    let c = StridedCopy::pack(8, 16, 32);
    let src = stream.alloc_zeros::<u8>(8 * 32 - 17).unwrap();
    let mut dst = stream.alloc_zeros::<u8>(128).unwrap();
    let e = c.run_gpu(&gpu, &stream, &src, &mut dst).unwrap_err().to_string();
    assert!(e.contains("source holds 239 bytes but 240"), "{e}");

    let plan = c.plan(256).unwrap();
    let src = stream.alloc_zeros::<u8>(240).unwrap();
    let other = stream.alloc_zeros::<u8>(128).unwrap();
    let e = gpu.launch(&plan, &stream, &mut [Bind::Read(&src), Bind::Read(&other)]).unwrap_err().to_string();
    assert!(e.contains("bound read-only"), "{e}");
    let mut small = stream.alloc_zeros::<u8>(64).unwrap();
    let e = gpu.launch(&plan, &stream, &mut [Bind::Read(&src), Bind::Write(&mut small)]).unwrap_err().to_string();
    assert!(e.contains("64 bytes bound, the plan needs 128"), "{e}");
}

#[test]
fn gpu_pinned_memory_round_trip() {
    let Some(gpu) = gpu_or_skip("gpu_pinned_memory_round_trip") else { return };
    let stream = gpu.new_stream().unwrap();
    let mut host = gpu.alloc_pinned::<u32>(4096, PinnedKind::Cached).unwrap();
    for (i, v) in host.as_mut_slice().unwrap().iter_mut().enumerate() {
        *v = i as u32 * 3;
    }
    let dev = stream.clone_htod(host.host_slice()).unwrap();
    let mut back = gpu.alloc_pinned::<u32>(4096, PinnedKind::Cached).unwrap();
    stream.memcpy_dtoh(&dev, back.host_slice_mut()).unwrap();
    assert_eq!(back.as_slice().unwrap(), host.as_slice().unwrap());
    if gpu.props().can_map_host_memory {
        let mapped = gpu.alloc_pinned::<u8>(64, PinnedKind::Mapped).unwrap();
        assert_ne!(mapped.device_address().unwrap(), 0);
    }
    assert!(host.device_address().is_err(), "only mapped memory has a device address");
}

#[test]
fn gpu_device_properties_are_sane() {
    let Some(gpu) = gpu_or_skip("gpu_device_properties_are_sane") else { return };
    let p = gpu.props();
    assert!(p.compute_capability.0 >= 8, "memwall's PTX targets sm_80+: {p:?}");
    assert!(p.sm_count > 0 && p.total_mem_bytes > 0 && p.max_smem_per_block_optin >= 48 * 1024, "{p:?}");
    let n = memwall::gpu::device_count().unwrap();
    assert!(matches!(memwall::gpu::Gpu::new(n), Err(memwall::Error::NoSuchDevice { .. })));
}
