//! The strided-copy kernels on the emulator against the CPU path.

use memwall::emu::{Emulator, HostBind};
use memwall::strided::StridedCopy;
use proptest::prelude::*;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 + 7) as u8).collect()
}

/// 16-byte aligned storage, so every word size can be planned.
fn aligned(bytes: &[u8]) -> Vec<u128> {
    let mut v = vec![0u128; bytes.len().div_ceil(16).max(1)];
    bytemuck::cast_slice_mut::<u128, u8>(&mut v)[..bytes.len()].copy_from_slice(bytes);
    v
}

fn check(c: StridedCopy) -> Result<(), TestCaseError> {
    let Ok((s, d)) = c.required_lengths() else { return Ok(()) };
    let src = pattern(s as usize);
    let mut want = vec![0xEEu8; d as usize];
    c.run_cpu(&src, &mut want).unwrap();
    let src_words = aligned(&src);
    let mut dst_words = aligned(&vec![0xEEu8; d as usize]);
    let plan = c.plan(16).unwrap();
    Emulator::new().launch(&plan, &mut [HostBind::read(&src_words), HostBind::write(&mut dst_words)]).unwrap();
    let got = &bytemuck::cast_slice::<u128, u8>(&dst_words)[..d as usize];
    prop_assert_eq!(got, &want[..], "{:?} via {}", c, plan.kernel);
    Ok(())
}

#[test]
fn every_word_size_matches_cpu() {
    for c in [
        StridedCopy::pack(100, 64, 96),
        StridedCopy::pack(77, 24, 40),
        StridedCopy::pack(53, 12, 20),
        StridedCopy::pack(30, 6, 10),
        StridedCopy::pack(29, 3, 7),
        StridedCopy::unpack(16, 256, 1024),
        StridedCopy { rows: 50, row_bytes: 32, src_offset: 49 * 64, src_stride: -64, dst_offset: 16, dst_stride: 48 },
        StridedCopy::pack(300_000, 16, 32), // more rows than threads: the grid-stride loop
    ] {
        check(c).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_layouts_match_cpu(
        rows in 0u64..40, row_bytes in 0u64..80, so in 0u64..64, ss in -160i64..160, d_o in 0u64..64, ds in 0i64..160
    ) {
        check(StridedCopy { rows, row_bytes, src_offset: so, src_stride: ss, dst_offset: d_o, dst_stride: ds.max(row_bytes as i64) })?;
    }
}
