//! The emulator's primitives against known answers, and its fault reports.

use half::{bf16, f16};
use memwall::emu::{Emulator, HostBind};
use memwall::selftest::*;
use memwall::Error;

/// A deterministic pseudo-random stream (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn emu() -> Emulator {
    Emulator::new()
}

#[test]
fn shuffles_match_ptx_semantics() {
    let input: Vec<i32> = (0..64).map(|i| i * 7 + 1).collect();
    for mode in [Shfl::Idx, Shfl::Up, Shfl::Down, Shfl::Xor] {
        for width in [1u32, 2, 4, 8, 16, 32] {
            for b in [0u32, 1, 3, 5, 8, 17, 31, 33] {
                let mut out = vec![0i32; 64];
                emu()
                    .launch(
                        &shfl_plan(2, mode, b, width as i32),
                        &mut [HostBind::read(&input), HostBind::write(&mut out)],
                    )
                    .unwrap();
                for t in 0..64u32 {
                    let lane = t % 32;
                    let src = (t - lane + shfl_source(mode, lane, b, width)) as usize;
                    assert_eq!(out[t as usize], input[src], "{mode:?} b={b} width={width} thread {t}");
                }
            }
        }
    }
}

#[test]
fn votes_and_partial_masks() {
    let mut rng = Rng(7);
    let mut pred: Vec<i32> = (0..96).map(|_| (rng.next() % 3 == 0) as i32).collect();
    pred[64..96].iter_mut().for_each(|p| *p = 1); // warp 2: all true
    let mut out = vec![0u32; 12];
    emu().launch(&vote_plan(3), &mut [HostBind::read(&pred), HostBind::write(&mut out)]).unwrap();
    for w in 0..3 {
        let bits: u32 = (0..32).filter(|&l| pred[w * 32 + l] != 0).map(|l| 1u32 << l).sum();
        assert_eq!(out[4 * w], bits, "ballot warp {w}");
        assert_eq!(out[4 * w + 1], (bits != 0) as u32, "any warp {w}");
        assert_eq!(out[4 * w + 2], (bits == u32::MAX) as u32, "all warp {w}");
        assert_eq!(out[4 * w + 3], bits & 0xffff, "half ballot warp {w}");
    }
}

#[test]
fn barriers_and_static_shared_memory() {
    let mut rng = Rng(11);
    let blocks = 9;
    let input: Vec<f32> = (0..256 * blocks).map(|_| rng.f32()).collect();
    let mut out = vec![0f32; blocks];
    emu().launch(&block_sum_plan(blocks as u32), &mut [HostBind::read(&input), HostBind::write(&mut out)]).unwrap();
    for b in 0..blocks {
        assert_eq!(out[b].to_bits(), block_sum_oracle(&input[b * 256..(b + 1) * 256]).to_bits(), "block {b}");
    }
}

fn mma_case(bf16_inputs: bool, seed: u64) {
    let mut rng = Rng(seed);
    let to_bits = |x: f32| if bf16_inputs { bf16::from_f32(x).to_bits() } else { f16::from_f32(x).to_bits() };
    let from_bits = |b: u16| if bf16_inputs { bf16::from_bits(b).to_f64() } else { f16::from_bits(b).to_f64() };
    let a: Vec<u16> = (0..256).map(|_| to_bits(rng.f32())).collect();
    let b: Vec<u16> = (0..128).map(|_| to_bits(rng.f32())).collect();
    let c: Vec<f32> = (0..128).map(|_| rng.f32()).collect();
    let mut d = vec![f32::NAN; 128];
    emu()
        .launch(
            &mma_plan(bf16_inputs),
            &mut [HostBind::read(&a), HostBind::read(&b), HostBind::read(&c), HostBind::write(&mut d)],
        )
        .unwrap();
    for m in 0..16 {
        for n in 0..8 {
            let want: f64 =
                (0..16).map(|k| from_bits(a[m * 16 + k]) * from_bits(b[n * 16 + k])).sum::<f64>() + c[m * 8 + n] as f64;
            let got = d[m * 8 + n] as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "bf16={bf16_inputs} D[{m}][{n}] = {got}, want {want}"
            );
        }
    }
}

#[test]
fn mma_m16n8k16_matches_scalar_matmul() {
    for seed in 1..6 {
        mma_case(false, seed);
        mma_case(true, seed + 100);
    }
}

#[test]
fn ldmatrix_layouts() {
    let src: Vec<u16> = (0..256).map(|i| (i * 37 + 5) as u16).collect();
    for count in [1, 2, 4] {
        for trans in [false, true] {
            let mut out = vec![0xdead_beefu32; 128];
            emu().launch(&ldmatrix_plan(count, trans), &mut [HostBind::read(&src), HostBind::write(&mut out)]).unwrap();
            for lane in 0..32 {
                for j in 0..4 {
                    assert_eq!(
                        out[(4 * lane + j) as usize],
                        ldmatrix_oracle(&src, count, trans, lane, j),
                        "x{count} trans={trans} lane {lane} reg {j}"
                    );
                }
            }
        }
    }
}

#[test]
fn cp_async_groups_complete_in_order() {
    let src: Vec<u32> = (0..256).map(|i| i * 3 + 1).collect();
    let mut out = vec![7u32; 384];
    emu().launch(&cp_async_plan(), &mut [HostBind::read(&src), HostBind::write(&mut out)]).unwrap();
    assert_eq!(&out[..256], &src[..]);
    assert!(out[256..].iter().all(|&v| v == 0), "zero-filled copies");
}

#[test]
fn dynamic_shared_memory_in_bounds() {
    let mut out = [0f32];
    emu().launch(&smem_index_plan(64, 63), &mut [HostBind::write(&mut out)]).unwrap();
    assert_eq!(out[0], 1.5);
}

fn fault(plan: &memwall::gpu::LaunchPlan) -> String {
    let mut out = vec![0i32; 512];
    match emu().launch(plan, &mut [HostBind::write(&mut out)]) {
        Err(Error::Emulator { detail, .. }) => detail,
        other => panic!("expected an emulator fault from {}, got {other:?}", plan.kernel),
    }
}

#[test]
fn reports_dynamic_shared_memory_out_of_bounds() {
    let msg = fault(&smem_index_plan(64, 64));
    assert!(msg.contains("dynamic shared memory access out of bounds at byte offset 256 (256 bytes"), "{msg}");
    assert!(msg.contains("kernel memwall_selftest_smem_index, block (0,0,0), thread (0,0,0)"), "{msg}");
    let msg = fault(&smem_index_plan(60, 1000));
    assert!(msg.contains("out of bounds at byte offset 4000 (240 bytes"), "{msg}");
}

#[test]
fn reports_barrier_divergence() {
    let msg = fault(&bad_plan(Bad::DivergentBarrier, 64));
    assert!(msg.contains("barrier divergence"), "{msg}");
    assert!(msg.contains("selftest.cu"), "names the barrier's source line: {msg}");
    assert!(msg.contains("has exited without reaching it"), "{msg}");
}

#[test]
fn reports_warp_mask_faults() {
    let msg = fault(&bad_plan(Bad::MaskDisagreement, 32));
    assert!(msg.contains("mask disagreement") && msg.contains("0x0000ffff") && msg.contains("0xffffffff"), "{msg}");
    let msg = fault(&bad_plan(Bad::ExitedLanes, 32));
    assert!(msg.contains("__shfl_sync with mask 0xffffffff waits for lane 16, which has exited"), "{msg}");
    let msg = fault(&bad_plan(Bad::MaskWithoutCaller, 32));
    assert!(msg.contains("does not include the calling lane 1"), "{msg}");
    assert!(msg.contains("thread (1,0,0)"), "{msg}");
    let msg = fault(&bad_plan(Bad::WarpWaitsOnBarrier, 32));
    assert!(msg.contains("deadlock: lane 0 waits in __shfl_sync") && msg.contains("waiting at __syncthreads"), "{msg}");
}

#[test]
fn cp_async_results_are_invisible_before_the_wait() {
    // The kernel reads staged shared memory before waiting: the emulator has
    // not performed the copy yet, so the read sees the block's poison.
    let mut out = vec![0x1234_5678i32; 512];
    emu().launch(&bad_plan(Bad::ReadBeforeCpAsyncWait, 32), &mut [HostBind::write(&mut out)]).unwrap();
    assert!(out[..32].iter().all(|&v| v != 0x1234_5678), "read the copy's source before the wait: {:?}", &out[..4]);
}

#[test]
fn refuses_short_buffers_and_bad_plans() {
    let input = vec![0i32; 31];
    let mut out = vec![0i32; 32];
    let e = emu().launch(&shfl_plan(1, Shfl::Idx, 0, 32), &mut [HostBind::read(&input), HostBind::write(&mut out)]);
    assert!(e.unwrap_err().to_string().contains("124 bytes bound, the plan needs 128"));
    let e = emu().launch(&shfl_plan(1, Shfl::Idx, 0, 32), &mut [HostBind::read(&out), HostBind::read(&out)]);
    assert!(e.unwrap_err().to_string().contains("bound read-only"));
    let mut p = shfl_plan(1, Shfl::Idx, 0, 32);
    p.kernel = "memwall_no_such_kernel";
    assert!(matches!(emu().launch(&p, &mut []), Err(Error::UnknownKernel { .. })));
}

#[test]
fn many_blocks_on_many_workers() {
    let blocks = 64;
    let input: Vec<f32> = (0..256 * blocks).map(|i| (i % 97) as f32).collect();
    for workers in [1, 2, 4] {
        let mut out = vec![0f32; blocks];
        Emulator::with_workers(workers)
            .launch(&block_sum_plan(blocks as u32), &mut [HostBind::read(&input), HostBind::write(&mut out)])
            .unwrap();
        for b in 0..blocks {
            assert_eq!(out[b], block_sum_oracle(&input[b * 256..(b + 1) * 256]), "workers {workers} block {b}");
        }
    }
}

#[test]
fn atomics_across_blocks_and_workers() {
    let n = 5000u32;
    let input: Vec<u32> = (0..n).map(|i| (i * 7919) % 1000).collect();
    for workers in [1, 2, 3] {
        let (mut hist, mut sums, mut maxima) = (vec![0u32; 16], vec![0f32; 1], vec![0u32; 1]);
        Emulator::with_workers(workers)
            .launch(
                &atomics_plan(n),
                &mut [
                    HostBind::read(&input),
                    HostBind::write(&mut hist),
                    HostBind::write(&mut sums),
                    HostBind::write(&mut maxima),
                ],
            )
            .unwrap();
        for (bin, &count) in hist.iter().enumerate() {
            assert_eq!(count as usize, input.iter().filter(|&&v| v as usize % 16 == bin).count(), "bin {bin}");
        }
        assert_eq!(sums[0], input.iter().map(|&v| v as f32).sum::<f32>());
        assert_eq!(maxima[0], *input.iter().max().unwrap());
    }
}

#[test]
fn half_conversions_round_to_nearest_even() {
    let mut rng = Rng(3);
    let mut input: Vec<f32> = (0..4000).map(|_| f32::from_bits(rng.next() as u32)).collect();
    // Edge cases: ties, overflow thresholds, subnormals, signed zero, infinities.
    input.extend([
        65504.0,
        65519.99,
        65520.0,
        1e9,
        -1e9,
        5.960_464_5e-8,
        2.980_232_2e-8,
        2.980_233e-8,
        1e-10,
        -0.0,
        0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        1.0 + 1.0 / 256.0,
        3.0e38,
        f32::MIN_POSITIVE,
        6.097_555e-5,
    ]);
    let n = input.len();
    let (mut h, mut b, mut back) = (vec![0u16; n], vec![0u16; n], vec![0f32; 2 * n]);
    emu()
        .launch(
            &convert_plan(n as u32),
            &mut [HostBind::read(&input), HostBind::write(&mut h), HostBind::write(&mut b), HostBind::write(&mut back)],
        )
        .unwrap();
    for (i, &x) in input.iter().enumerate() {
        if x.is_nan() {
            assert_eq!((h[i], b[i]), (0x7fff, 0x7fff), "NaN {:#x} becomes the canonical NaN", x.to_bits());
            continue;
        }
        assert_eq!(h[i], f16::from_f32(x).to_bits(), "f16 of {x:e} ({:#x})", x.to_bits());
        assert_eq!(b[i], bf16::from_f32(x).to_bits(), "bf16 of {x:e} ({:#x})", x.to_bits());
        assert_eq!(back[2 * i].to_bits(), f16::from_bits(h[i]).to_f32().to_bits());
        assert_eq!(back[2 * i + 1].to_bits(), bf16::from_bits(b[i]).to_f32().to_bits());
    }
}
