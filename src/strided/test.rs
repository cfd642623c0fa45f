use proptest::prelude::*;

use super::*;

/// The plainest possible definition: byte by byte, row by row.
fn naive(c: &StridedCopy, src: &[u8], dst: &mut [u8]) {
    for r in 0..c.rows as i128 {
        for b in 0..c.row_bytes as i128 {
            let s = c.src_offset as i128 + r * c.src_stride as i128 + b;
            let d = c.dst_offset as i128 + r * c.dst_stride as i128 + b;
            dst[d as usize] = src[s as usize];
        }
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 + 7) as u8).collect()
}

#[test]
fn pack_gathers_rows() {
    let src = pattern(64);
    let mut dst = vec![0u8; 12];
    StridedCopy::pack(3, 4, 16).run_cpu(&src, &mut dst).unwrap();
    let want: Vec<u8> = [0, 16, 32].iter().flat_map(|&o| src[o..o + 4].to_vec()).collect();
    assert_eq!(dst, want);
}

#[test]
fn unpack_inverts_pack() {
    let src = pattern(100);
    let mut packed = vec![0u8; 30];
    StridedCopy::pack(5, 6, 20).run_cpu(&src, &mut packed).unwrap();
    let mut back = vec![0xAAu8; 100];
    StridedCopy::unpack(5, 6, 20).run_cpu(&packed, &mut back).unwrap();
    for r in 0..5 {
        assert_eq!(&back[r * 20..r * 20 + 6], &src[r * 20..r * 20 + 6]);
        if r < 4 {
            assert!(back[r * 20 + 6..r * 20 + 20].iter().all(|&b| b == 0xAA), "gap bytes untouched");
        }
    }
}

#[test]
fn negative_stride_reads_backwards() {
    let src = pattern(40);
    let c = StridedCopy { rows: 3, row_bytes: 4, src_offset: 20, src_stride: -10, dst_offset: 0, dst_stride: 4 };
    let mut dst = vec![0u8; 12];
    c.run_cpu(&src, &mut dst).unwrap();
    let want: Vec<u8> = [20, 10, 0].iter().flat_map(|&o| src[o..o + 4].to_vec()).collect();
    assert_eq!(dst, want);
}

#[test]
fn errors_name_the_bad_values() {
    let e = StridedCopy::pack(4, 8, 16).run_cpu(&[0u8; 55], &mut [0u8; 32]).unwrap_err();
    assert!(e.to_string().contains("source holds 55 bytes but 56"), "{e}");
    let e = StridedCopy::pack(4, 8, 16).run_cpu(&[0u8; 56], &mut [0u8; 31]).unwrap_err();
    assert!(e.to_string().contains("destination holds 31 bytes but 32"), "{e}");
    let c = StridedCopy { rows: 3, row_bytes: 4, src_offset: 5, src_stride: -10, dst_offset: 0, dst_stride: 4 };
    let e = c.run_cpu(&[0u8; 64], &mut [0u8; 12]).unwrap_err();
    assert!(e.to_string().contains("before the buffer"), "{e}");
    let e = StridedCopy::unpack(3, 8, 4).run_cpu(&[0u8; 64], &mut [0u8; 64]).unwrap_err();
    assert!(e.to_string().contains("dst_stride = 4"), "{e}");
    let e = StridedCopy::pack(u64::MAX, 2, 2).total_bytes().unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
    let e = StridedCopy::pack(3, 4, i64::MAX).required_lengths().unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
}

#[test]
fn empty_copies_touch_nothing() {
    let mut dst = [7u8; 4];
    StridedCopy::pack(0, 16, 32).run_cpu(&[], &mut dst).unwrap();
    StridedCopy::pack(5, 0, 32).run_cpu(&[], &mut dst).unwrap();
    assert_eq!(dst, [7; 4]);
    assert!(StridedCopy::pack(0, 16, 32).plan(256).unwrap().validate().is_ok());
}

#[test]
fn plan_picks_the_widest_aligned_word() {
    let cases = [
        (StridedCopy::pack(8, 64, 128), 256, "memwall_strided_copy_w16"),
        (StridedCopy::pack(8, 64, 72), 256, "memwall_strided_copy_w8"),
        (StridedCopy::pack(8, 12, 16), 256, "memwall_strided_copy_w4"),
        (StridedCopy::pack(8, 6, 16), 256, "memwall_strided_copy_w2"),
        (StridedCopy::pack(8, 64, 128), 1, "memwall_strided_copy_w1"),
        (StridedCopy::pack(1, 64, 3), 256, "memwall_strided_copy_w16"), // one row: stride is irrelevant
        (StridedCopy { src_offset: 4, ..StridedCopy::pack(8, 64, 128) }, 256, "memwall_strided_copy_w4"),
    ];
    for (c, align, kernel) in cases {
        let plan = c.plan(align).unwrap();
        assert_eq!(plan.kernel, kernel, "{c:?} align {align}");
        plan.validate().unwrap();
        plan.check_signature().unwrap();
    }
}

#[test]
fn plan_declares_the_bytes_it_touches() {
    let c = StridedCopy { rows: 4, row_bytes: 16, src_offset: 48, src_stride: -16, dst_offset: 32, dst_stride: 32 };
    let plan = c.plan(256).unwrap();
    assert_eq!(plan.buffers[0].min_bytes, 64); // rows at 48, 32, 16, 0
    assert_eq!(plan.buffers[1].min_bytes, 32 + 3 * 32 + 16);
    assert_eq!(plan.args[0], KernelArg::Buffer { slot: 0, offset: 48 });
    assert_eq!(plan.args[3], KernelArg::U64(1), "16-byte rows are one 16-byte word");
}

#[test]
fn plan_rejects_bad_alignment_argument() {
    assert!(StridedCopy::pack(1, 1, 1).plan(3).is_err());
}

fn arb_copy() -> impl Strategy<Value = StridedCopy> {
    (0u64..12, 0u64..40, 0u64..64, -80i64..80, 0u64..64, 0i64..80).prop_map(|(rows, row_bytes, so, ss, d_o, ds)| {
        StridedCopy {
            rows,
            row_bytes,
            src_offset: so,
            src_stride: ss,
            dst_offset: d_o,
            dst_stride: ds.max(row_bytes as i64),
        }
    })
}

proptest! {
    #[test]
    fn cpu_matches_naive(c in arb_copy()) {
        match c.required_lengths() {
            Err(_) => {
                // Invalid layouts must be refused by the CPU path as well.
                prop_assert!(c.run_cpu(&pattern(4096), &mut vec![0; 4096]).is_err());
            }
            Ok((s, d)) => {
                let src = pattern(s as usize);
                let mut got = vec![0xEEu8; d as usize];
                let mut want = got.clone();
                c.run_cpu(&src, &mut got).unwrap();
                naive(&c, &src, &mut want);
                prop_assert_eq!(got, want);
                let plan = c.plan(16).unwrap();
                prop_assert!(plan.validate().is_ok());
                prop_assert_eq!(plan.buffers[0].min_bytes, s);
                prop_assert_eq!(plan.buffers[1].min_bytes, d);
            }
        }
    }
}
