//! Datatype pack/unpack on a real GPU against the CPU path, including the
//! one-shot pack into mapped pinned host memory. Skips without a driver.

use memwall::datatype::{Committed, Datatype, Order, Primitive, StructPadding};
use memwall::gpu::{gpu_or_skip, PinnedKind};

fn types() -> Vec<Datatype> {
    let int = Datatype::named(Primitive::I32);
    let dbl = Datatype::named(Primitive::F64);
    vec![
        int.vector(1000, 3, 7).unwrap(),
        dbl.vector(4096, 4, 6).unwrap(),
        dbl.subarray(&[64, 64, 64], &[32, 32, 16], &[8, 8, 8], Order::C).unwrap(),
        int.subarray(&[100, 90], &[40, 30], &[10, 20], Order::Fortran).unwrap(),
        int.indexed(&[3, 1, 2, 7], &[0, 5, 9, 40]).unwrap(),
        Datatype::structure(&[2, 1], &[0, 24], &[int.clone(), dbl.vector(3, 1, 2).unwrap()], StructPadding::None)
            .unwrap(),
        Datatype::byte().vector(5000, 3, 5).unwrap(),
    ]
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 + 7) as u8).collect()
}

#[test]
fn gpu_pack_and_unpack_match_cpu() {
    let Some(gpu) = gpu_or_skip("gpu_pack_and_unpack_match_cpu") else { return };
    let stream = gpu.new_stream().unwrap();
    for t in types() {
        let c = Committed::new(&t).unwrap();
        let count = 3;
        let (lo, hi) = c.layout_for(count).unwrap().span();
        let origin = (-lo).max(0) as usize;
        let src = pattern((origin as i128 + hi) as usize);
        let n = c.pack_size(count).unwrap();
        let mut want = vec![0u8; n];
        c.pack(&src, origin, count, &mut want, &mut 0).unwrap();

        let dsrc = stream.clone_htod(&src).unwrap();
        let mut dpacked = stream.alloc_zeros::<u8>(n).unwrap();
        let mut pos = 0u64;
        c.pack_gpu(&gpu, &stream, &dsrc, origin as u64, count, &mut dpacked, &mut pos).unwrap();
        assert_eq!(pos as usize, n);
        assert!(stream.clone_dtoh(&dpacked).unwrap() == want, "pack {t:?}");

        let mut expect = vec![0u8; src.len()];
        c.unpack(&want, &mut 0, &mut expect, origin, count).unwrap();
        let mut dback = stream.alloc_zeros::<u8>(src.len()).unwrap();
        let mut pos = 0u64;
        c.unpack_gpu(&gpu, &stream, &dpacked, &mut pos, &mut dback, origin as u64, count).unwrap();
        assert!(stream.clone_dtoh(&dback).unwrap() == expect, "unpack {t:?}");
    }
}

#[test]
fn gpu_one_shot_pack_into_mapped_host_memory() {
    let Some(gpu) = gpu_or_skip("gpu_one_shot_pack_into_mapped_host_memory") else { return };
    if !gpu.props().can_map_host_memory {
        return;
    }
    let stream = gpu.new_stream().unwrap();
    let c = Committed::new(&Datatype::named(Primitive::F64).vector(2048, 2, 3).unwrap()).unwrap();
    let (_, hi) = c.layout().span();
    let src = pattern(hi as usize);
    let n = c.pack_size(1).unwrap();
    let mut want = vec![0u8; n];
    c.pack(&src, 0, 1, &mut want, &mut 0).unwrap();
    let dsrc = stream.clone_htod(&src).unwrap();
    let mut host = gpu.alloc_pinned::<u8>(n, PinnedKind::Mapped).unwrap();
    {
        let mut view = host.mapped_view().unwrap();
        c.pack_gpu(&gpu, &stream, &dsrc, 0, 1, &mut view, &mut 0).unwrap();
    }
    stream.synchronize().unwrap();
    assert!(host.as_slice().unwrap() == &want[..]);
}

#[test]
fn gpu_pack_refuses_bad_buffers() {
    let Some(gpu) = gpu_or_skip("gpu_pack_refuses_bad_buffers") else { return };
    let stream = gpu.new_stream().unwrap();
    let c = Committed::new(&Datatype::named(Primitive::I32).vector(10, 1, 2).unwrap()).unwrap();
    let src = stream.alloc_zeros::<u8>(75).unwrap();
    let mut dst = stream.alloc_zeros::<u8>(40).unwrap();
    let e = c.pack_gpu(&gpu, &stream, &src, 0, 1, &mut dst, &mut 0).unwrap_err().to_string();
    assert!(e.contains("75 bytes bound, the plan needs 76"), "{e}");
    let src = stream.alloc_zeros::<u8>(76).unwrap();
    let mut pos = 4;
    let e = c.pack_gpu(&gpu, &stream, &src, 0, 1, &mut dst, &mut pos).unwrap_err().to_string();
    assert!(e.contains("40 bytes bound, the plan needs 44"), "{e}");
    assert_eq!(pos, 4, "position unchanged on error");
}

/// Count 0 and a type with no data move nothing and leave the position, as
/// MPI_Pack does, instead of asking the driver for a zero-byte table.
#[test]
fn gpu_pack_of_nothing_is_a_no_op() {
    let Some(gpu) = gpu_or_skip("gpu_pack_of_nothing_is_a_no_op") else { return };
    let stream = gpu.new_stream().unwrap();
    let indexed = Datatype::byte().hindexed(&[3, 5], &[0, 10]).unwrap();
    let empty = Datatype::byte().contiguous(0).unwrap();
    for (t, count) in [(&indexed, 0i64), (&empty, 4)] {
        let c = Committed::new(t).unwrap();
        let src = stream.alloc_zeros::<u8>(16).unwrap();
        let mut dst = stream.alloc_zeros::<u8>(16).unwrap();
        let mut pos = 5;
        c.pack_gpu(&gpu, &stream, &src, 0, count, &mut dst, &mut pos).unwrap();
        assert_eq!(pos, 5);
        c.unpack_gpu(&gpu, &stream, &src, &mut pos, &mut dst, 0, count).unwrap();
        assert_eq!(pos, 5);
    }
}
