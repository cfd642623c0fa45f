//! The self-test kernels on a real GPU and on the emulator, compared byte for
//! byte. Skips without a driver (fails under MEMWALL_REQUIRE_GPU=1).
//!
//! mma.sync is compared bit-exactly on inputs whose products and sums are
//! exact in f32 (small integers times powers of two), where any rounding
//! order gives the same result; on random inputs, within 2 ulp, since tensor
//! cores may round their internal sums differently from the emulator.

use half::{bf16, f16};
use memwall::emu::{Emulator, HostBind};
use memwall::gpu::{gpu_or_skip, Bind, Gpu, LaunchPlan};
use memwall::selftest::*;

/// Runs `plan` on the GPU and the emulator with the same inputs; returns the
/// output bytes of both. `inputs` fill the read slots in order, the output
/// (last slot) starts as `out_len` bytes of 0x5A.
fn both(gpu: &Gpu, plan: &LaunchPlan, inputs: &[&[u8]], out_len: usize) -> (Vec<u8>, Vec<u8>) {
    let stream = gpu.new_stream().unwrap();
    let dev_in: Vec<_> = inputs.iter().map(|b| stream.clone_htod(*b).unwrap()).collect();
    let mut dev_out = stream.clone_htod(&vec![0x5Au8; out_len]).unwrap();
    let mut binds: Vec<Bind> = dev_in.iter().map(|b| Bind::Read(b)).collect();
    binds.push(Bind::Write(&mut dev_out));
    gpu.launch(plan, &stream, &mut binds).unwrap();
    let on_gpu = stream.clone_dtoh(&dev_out).unwrap();

    let host_in: Vec<Vec<u128>> = inputs.iter().map(|b| aligned(b)).collect();
    let mut host_out = aligned(&vec![0x5Au8; out_len]);
    let mut hb: Vec<HostBind> = host_in.iter().map(|b| HostBind::read(b)).collect();
    hb.push(HostBind::write(&mut host_out));
    Emulator::new().launch(plan, &mut hb).unwrap();
    let on_emu = bytemuck::cast_slice::<u128, u8>(&host_out)[..out_len].to_vec();
    (on_gpu, on_emu)
}

fn aligned(bytes: &[u8]) -> Vec<u128> {
    let mut v = vec![0u128; bytes.len().div_ceil(16).max(1)];
    bytemuck::cast_slice_mut::<u128, u8>(&mut v)[..bytes.len()].copy_from_slice(bytes);
    v
}

fn bytes<T: bytemuck::Pod>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}

#[test]
fn gpu_conformance_shuffles_votes_barriers() {
    let Some(gpu) = gpu_or_skip("gpu_conformance_shuffles_votes_barriers") else { return };
    let input: Vec<i32> = (0..128).map(|i| i * 7 + 1).collect();
    for mode in [Shfl::Idx, Shfl::Up, Shfl::Down, Shfl::Xor] {
        for width in [1, 4, 8, 32] {
            for b in [0, 1, 5, 17, 33] {
                let (g, e) = both(&gpu, &shfl_plan(4, mode, b, width), &[bytes(&input)], 512);
                assert_eq!(g, e, "{mode:?} b={b} width={width}");
            }
        }
    }
    let pred: Vec<i32> = (0..128).map(|i| ((i * 5) % 3 == 0) as i32).collect();
    let (g, e) = both(&gpu, &vote_plan(4), &[bytes(&pred)], 64);
    assert_eq!(g, e, "votes");
    let values: Vec<f32> = (0..256 * 16).map(|i| ((i * 7919) % 1000) as f32 * 0.37 - 150.0).collect();
    let (g, e) = both(&gpu, &block_sum_plan(16), &[bytes(&values)], 64);
    assert_eq!(g, e, "block sums");
}

#[test]
fn gpu_conformance_ldmatrix_cp_async() {
    let Some(gpu) = gpu_or_skip("gpu_conformance_ldmatrix_cp_async") else { return };
    let src: Vec<u16> = (0..256).map(|i| (i * 37 + 5) as u16).collect();
    for count in [1, 2, 4] {
        for trans in [false, true] {
            let (g, e) = both(&gpu, &ldmatrix_plan(count, trans), &[bytes(&src)], 512);
            assert_eq!(g, e, "ldmatrix x{count} trans={trans}");
        }
    }
    let words: Vec<u32> = (0..256).map(|i| i * 3 + 1).collect();
    let (g, e) = both(&gpu, &cp_async_plan(), &[bytes(&words)], 1536);
    assert_eq!(g, e, "cp.async");
}

#[test]
fn gpu_conformance_conversions() {
    let Some(gpu) = gpu_or_skip("gpu_conformance_conversions") else { return };
    let mut x = 0x9E37_79B9u32;
    let input: Vec<f32> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            f32::from_bits(x)
        })
        .collect();
    let n = input.len() as u32;
    // Three output buffers, so this test binds them itself rather than via `both`.
    let stream = gpu.new_stream().unwrap();
    let dev_in = stream.clone_htod(&input).unwrap();
    let mut dh = stream.alloc_zeros::<u16>(input.len()).unwrap();
    let mut db = stream.alloc_zeros::<u16>(input.len()).unwrap();
    let mut dback = stream.alloc_zeros::<f32>(2 * input.len()).unwrap();
    gpu.launch(
        &convert_plan(n),
        &stream,
        &mut [Bind::Read(&dev_in), Bind::Write(&mut dh), Bind::Write(&mut db), Bind::Write(&mut dback)],
    )
    .unwrap();
    let (gh, gb, gback) =
        (stream.clone_dtoh(&dh).unwrap(), stream.clone_dtoh(&db).unwrap(), stream.clone_dtoh(&dback).unwrap());
    let (mut h, mut b, mut back) = (vec![0u16; input.len()], vec![0u16; input.len()], vec![0f32; 2 * input.len()]);
    Emulator::new()
        .launch(
            &convert_plan(n),
            &mut [HostBind::read(&input), HostBind::write(&mut h), HostBind::write(&mut b), HostBind::write(&mut back)],
        )
        .unwrap();
    assert_eq!(gh, h, "f16 bits");
    assert_eq!(gb, b, "bf16 bits");
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&gback), bits(&back), "round trips");
}

#[test]
fn gpu_conformance_mma() {
    let Some(gpu) = gpu_or_skip("gpu_conformance_mma") else { return };
    for bf in [false, true] {
        let enc = |x: f32| if bf { bf16::from_f32(x).to_bits() } else { f16::from_f32(x).to_bits() };
        // Exact case: small integers, every partial sum representable.
        let a: Vec<u16> = (0..256).map(|i| enc(((i * 5) % 9) as f32 - 4.0)).collect();
        let b: Vec<u16> = (0..128).map(|i| enc(((i * 3) % 7) as f32 - 3.0)).collect();
        let c: Vec<f32> = (0..128).map(|i| (i % 11) as f32 - 5.0).collect();
        let (g, e) = both(&gpu, &mma_plan(bf), &[bytes(&a), bytes(&b), bytes(&c)], 512);
        assert_eq!(g, e, "mma exact, bf16={bf}");
        // Random case. The emulator rounds once (f64 sums); tensor cores
        // align the addends to the largest and truncate, so an output that
        // cancels can be off by many of its own ulps while staying within a
        // few ulps of the largest addend: bound the error by the magnitudes
        // summed, |c| + sum_k |a_mk b_nk|, times 2^-20 (8 f32 ulps of it).
        let dec = |x: u16| if bf { bf16::from_bits(x).to_f64() } else { f16::from_bits(x).to_f64() };
        let a: Vec<u16> = (0..256).map(|i| enc(((i * 7919) % 2001) as f32 / 1000.0 - 1.0)).collect();
        let b: Vec<u16> = (0..128).map(|i| enc(((i * 104_729) % 2001) as f32 / 1000.0 - 1.0)).collect();
        let c: Vec<f32> = (0..128).map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0).collect();
        let (g, e) = both(&gpu, &mma_plan(bf), &[bytes(&a), bytes(&b), bytes(&c)], 512);
        let (g, e): (&[f32], &[f32]) = (bytemuck::cast_slice(&g), bytemuck::cast_slice(&e));
        for (i, (x, y)) in g.iter().zip(e).enumerate() {
            let (m, n) = (i / 8, i % 8);
            let magnitude: f64 =
                f64::from(c[i].abs()) + (0..16).map(|k| (dec(a[m * 16 + k]) * dec(b[n * 16 + k])).abs()).sum::<f64>();
            let err = (f64::from(*x) - f64::from(*y)).abs();
            assert!(
                err <= magnitude * 2f64.powi(-20),
                "mma random bf16={bf} D[{m}][{n}]: gpu {x} emu {y} (error {err:e}, addends' magnitude {magnitude})"
            );
        }
    }
}
