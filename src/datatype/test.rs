use proptest::prelude::*;

use super::*;

fn int() -> Datatype {
    Datatype::named(Primitive::I32)
}
fn double() -> Datatype {
    Datatype::named(Primitive::F64)
}

/// (size, lb, extent, true_lb, true_extent)
fn bounds(t: &Datatype) -> (i64, i64, i64, i64, i64) {
    (t.size(), t.lb(), t.extent(), t.true_lb(), t.true_extent())
}

#[test]
fn bounds_follow_mpi() {
    assert_eq!(bounds(&int()), (4, 0, 4, 0, 4));
    assert_eq!(bounds(&int().contiguous(5).unwrap()), (20, 0, 20, 0, 20));
    assert_eq!(bounds(&int().vector(3, 2, 4).unwrap()), (24, 0, 40, 0, 40));
    assert_eq!(bounds(&int().vector(3, 1, -2).unwrap()), (12, -16, 20, -16, 20));
    assert_eq!(bounds(&int().hvector(2, 1, 3).unwrap()), (8, 0, 7, 0, 7));
    assert_eq!(bounds(&int().indexed(&[2, 1], &[5, 0]).unwrap()), (12, 0, 28, 0, 28));
    assert_eq!(bounds(&int().hindexed(&[1, 1], &[-8, 8]).unwrap()), (8, -8, 20, -8, 20));
    assert_eq!(bounds(&int().indexed_block(2, &[1, 4]).unwrap()), (16, 4, 20, 4, 20));
    assert_eq!(bounds(&int().vector(0, 2, 4).unwrap()), (0, 0, 0, 0, 0));
    // struct {double at 0; char at 8}: 9 bytes of data; padded to 16 as MPICH does.
    let members = [double(), Datatype::named(Primitive::I8)];
    let s = Datatype::structure(&[1, 1], &[0, 8], &members, StructPadding::None).unwrap();
    assert_eq!(bounds(&s), (9, 0, 9, 0, 9));
    let s = Datatype::structure(&[1, 1], &[0, 8], &members, StructPadding::Natural).unwrap();
    assert_eq!(bounds(&s), (9, 0, 16, 0, 9));
    // resized keeps the data's true bounds.
    let r = int().contiguous(2).unwrap().resized(-4, 16).unwrap();
    assert_eq!(bounds(&r), (8, -4, 16, 0, 8));
    // A vector of resized elements strides by the new extent.
    assert_eq!(bounds(&r.vector(2, 1, 1).unwrap()), (16, -4, 32, 0, 24));
    // subarray: the full array's extent, data bounds of the sub-block.
    let c = int().subarray(&[4, 5], &[2, 3], &[1, 2], Order::C).unwrap();
    assert_eq!(bounds(&c), (24, 0, 80, 28, 32));
    let f = int().subarray(&[4, 5], &[2, 3], &[1, 2], Order::Fortran).unwrap();
    assert_eq!(bounds(&f), (24, 0, 80, 36, 40));
    assert_eq!(int().dup(), int());
}

#[test]
fn bad_input_is_an_error_naming_the_value() {
    let e = |r: Result<Datatype>| r.unwrap_err().to_string();
    assert!(e(int().contiguous(-1)).contains("count = -1"));
    assert!(e(int().vector(2, -3, 1)).contains("blocklength = -3"));
    assert!(e(int().hindexed(&[1, 2], &[0])).contains("2 vs 1"));
    assert!(e(int().hvector(3, 1, i64::MAX)).contains("overflows i64"));
    assert!(e(int().resized(i64::MAX, 1)).contains("overflows i64"));
    assert!(e(int().subarray(&[4], &[3], &[2], Order::C)).contains("start 2 + subsize 3 of size 4"));
    assert!(e(int().subarray(&[0], &[0], &[0], Order::C)).contains("sizes[0] = 0"));
    assert!(e(int().vector(1 << 40, 1, 1 << 30)).contains("overflows"));
    let c = Committed::new(&int().vector(2, 1, 2).unwrap()).unwrap();
    assert!(c.pack_size(-2).unwrap_err().to_string().contains("count = -2"));
    let mut pos = 0;
    let err = c.pack(&[0u8; 11], 0, 1, &mut [0u8; 8], &mut pos).unwrap_err().to_string();
    assert!(err.contains("reaches bytes 0..12"), "{err}");
    let err = c.pack(&[0u8; 12], 0, 1, &mut [0u8; 7], &mut pos).unwrap_err().to_string();
    assert!(err.contains("pack buffer holds 7 bytes but 8"), "{err}");
    assert_eq!(pos, 0, "nothing written, position unchanged");
    let err = c.unpack(&[0u8; 8], &mut pos, &mut [0u8; 12], 0, 2).unwrap_err().to_string();
    assert!(err.contains("packed input holds 8 bytes but 16"), "{err}");
    let neg = Committed::new(&int().vector(3, 1, -2).unwrap()).unwrap();
    let err = neg.pack(&[0u8; 64], 8, 1, &mut [0u8; 12], &mut pos).unwrap_err().to_string();
    assert!(err.contains("reaches bytes -8..12"), "{err}");
}

fn layout(t: &Datatype) -> Layout {
    Committed::new(t).unwrap().layout().clone()
}

#[test]
fn equivalent_constructions_canonicalize_identically() {
    let b = Datatype::byte();
    let pairs: Vec<(&str, Datatype, Datatype)> = vec![
        ("contiguous ints = bytes", int().contiguous(4).unwrap(), b.contiguous(16).unwrap()),
        ("vector stride = blocklen is contiguous", int().vector(3, 2, 2).unwrap(), int().contiguous(6).unwrap()),
        ("vector = hvector", int().vector(3, 2, 5).unwrap(), int().hvector(3, 2, 20).unwrap()),
        ("vector = indexed_block", int().vector(3, 2, 5).unwrap(), int().indexed_block(2, &[0, 5, 10]).unwrap()),
        ("vector = hindexed", int().vector(3, 2, 5).unwrap(), int().hindexed(&[2, 2, 2], &[0, 20, 40]).unwrap()),
        (
            "vector of contiguous = vector",
            int().contiguous(2).unwrap().hvector(3, 1, 20).unwrap(),
            int().vector(3, 2, 5).unwrap(),
        ),
        (
            "struct of one vector = the vector",
            Datatype::structure(&[1], &[0], &[int().vector(3, 2, 5).unwrap()], StructPadding::None).unwrap(),
            int().vector(3, 2, 5).unwrap(),
        ),
        (
            "2-D subarray = hvector of contiguous",
            int().subarray(&[4, 6], &[3, 2], &[1, 1], Order::C).unwrap(),
            Datatype::structure(
                &[1],
                &[28],
                &[int().contiguous(2).unwrap().hvector(3, 1, 24).unwrap()],
                StructPadding::None,
            )
            .unwrap(),
        ),
        (
            "Fortran subarray = C subarray with reversed dims",
            int().subarray(&[6, 4], &[2, 3], &[1, 1], Order::Fortran).unwrap(),
            int().subarray(&[4, 6], &[3, 2], &[1, 1], Order::C).unwrap(),
        ),
        (
            "count-1 dims vanish",
            int().vector(1, 3, 100).unwrap().hvector(1, 1, 7).unwrap(),
            int().contiguous(3).unwrap(),
        ),
        (
            "nested vectors that tile fold to one",
            int().vector(2, 1, 3).unwrap().resized(0, 24).unwrap().contiguous(4).unwrap(),
            int().vector(8, 1, 3).unwrap(),
        ),
        (
            "struct of adjacent members is contiguous",
            Datatype::structure(&[2, 1], &[0, 8], &[int(), double()], StructPadding::None).unwrap(),
            b.contiguous(16).unwrap(),
        ),
        ("empty types", int().vector(0, 3, 4).unwrap(), double().indexed(&[0, 0], &[1, 5]).unwrap()),
        ("dup", int().vector(3, 2, 5).unwrap().dup(), int().vector(3, 2, 5).unwrap()),
    ];
    for (name, a, b) in pairs {
        assert_eq!(layout(&a), layout(&b), "{name}");
    }
}

#[test]
fn canonical_forms_are_compact() {
    // A 3-D subarray is one segment on a 2-D grid (rows of the last dimension).
    let l = layout(&double().subarray(&[8, 8, 8], &[4, 4, 4], &[2, 2, 2], Order::C).unwrap());
    assert_eq!(l.segments, vec![Segment { offset: (2 * 64 + 2 * 8 + 2) * 8, len: 32 }]);
    assert_eq!(l.dims, vec![Dim { count: 4, stride: 512 }, Dim { count: 4, stride: 64 }]);
    // Not limited to 3 dims.
    let l = layout(&Datatype::byte().subarray(&[3, 3, 3, 3, 3], &[2, 2, 2, 2, 2], &[0; 5], Order::C).unwrap());
    assert_eq!(l.dims.len(), 4);
    // An irregular indexed type is a merged segment list.
    let l = layout(&int().indexed(&[1, 2, 1], &[0, 1, 7]).unwrap());
    assert_eq!(l.segments, vec![Segment { offset: 0, len: 12 }, Segment { offset: 28, len: 4 }]);
    assert!(l.dims.is_empty());
    // A struct of strided members becomes segments.
    let s = Datatype::structure(&[1, 1], &[0, 100], &[int().vector(2, 1, 3).unwrap(), double()], StructPadding::None)
        .unwrap();
    assert_eq!(layout(&s).segments.len(), 3);
    // count > 1 of a contiguous type is one memcpy.
    let c = Committed::new(&int().contiguous(3).unwrap()).unwrap();
    assert!(c.layout_for(1000).unwrap().is_contiguous());
}

/// Pack by walking the typemap element by element: the reference.
fn naive_pack(t: &Datatype, src: &[u8], origin: usize, count: i64) -> Vec<u8> {
    let tm = t.typemap();
    let mut out = Vec::new();
    for e in 0..count {
        for &(d, n) in &tm {
            let start = (origin as i64 + e * t.extent() + d) as usize;
            out.extend_from_slice(&src[start..start + n as usize]);
        }
    }
    out
}

/// Unpack by walking the typemap: the reference.
fn naive_unpack(t: &Datatype, packed: &[u8], dst: &mut [u8], origin: usize, count: i64) {
    let tm = t.typemap();
    let mut pos = 0;
    for e in 0..count {
        for &(d, n) in &tm {
            let start = (origin as i64 + e * t.extent() + d) as usize;
            dst[start..start + n as usize].copy_from_slice(&packed[pos..pos + n as usize]);
            pos += n as usize;
        }
    }
}

/// A random type tree of depth <= `depth`.
pub(crate) fn arb_type(depth: u32) -> BoxedStrategy<Datatype> {
    let leaf = prop_oneof![
        Just(Datatype::byte()),
        Just(int()),
        Just(double()),
        Just(Datatype::named(Primitive::Other { size: 3, align: 1 })),
    ];
    leaf.prop_recursive(depth, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), 0i64..4).prop_map(|(t, c)| t.contiguous(c).unwrap()),
            (inner.clone(), 1i64..4, 0i64..3, -4i64..6).prop_map(|(t, c, b, s)| t.vector(c, b, s).unwrap()),
            (inner.clone(), 1i64..4, 0i64..3, -40i64..40).prop_map(|(t, c, b, s)| t.hvector(c, b, s).unwrap()),
            (inner.clone(), prop::collection::vec((0i64..3, 0i64..10), 1..4)).prop_map(|(t, v)| {
                let (b, d): (Vec<i64>, Vec<i64>) = v.into_iter().unzip();
                t.indexed(&b, &d).unwrap()
            }),
            (inner.clone(), prop::collection::vec((0i64..3, -30i64..30), 1..4)).prop_map(|(t, v)| {
                let (b, d): (Vec<i64>, Vec<i64>) = v.into_iter().unzip();
                t.hindexed(&b, &d).unwrap()
            }),
            (inner.clone(), 0i64..3, prop::collection::vec(0i64..8, 1..4))
                .prop_map(|(t, b, d)| t.indexed_block(b, &d).unwrap()),
            (prop::collection::vec((inner.clone(), 0i64..3, 0i64..40), 1..4)).prop_map(|members| {
                let b: Vec<i64> = members.iter().map(|m| m.1).collect();
                let d: Vec<i64> = members.iter().map(|m| m.2).collect();
                let t: Vec<Datatype> = members.into_iter().map(|m| m.0).collect();
                Datatype::structure(&b, &d, &t, StructPadding::None).unwrap()
            }),
            (inner.clone(), prop::collection::vec((1i64..5, 0i64..5, 0i64..5), 1..4), any::<bool>()).prop_map(
                |(t, dims, fortran)| {
                    let sizes: Vec<i64> = dims.iter().map(|d| d.0).collect();
                    let subs: Vec<i64> = dims.iter().map(|d| d.1 % (d.0 + 1)).collect();
                    let starts: Vec<i64> = dims.iter().zip(&subs).map(|(d, s)| d.2 % (d.0 - s + 1)).collect();
                    let order = if fortran { Order::Fortran } else { Order::C };
                    t.subarray(&sizes, &subs, &starts, order).unwrap()
                }
            ),
            (inner, -8i64..8, 0i64..24).prop_map(|(t, lb, grow)| {
                let ext = t.extent() + grow;
                t.resized(t.lb() + lb, ext).unwrap()
            }),
        ]
    })
    .boxed()
}

/// A buffer holding `count` elements of `t`, and the origin of element 0.
pub(crate) fn buffer_for(c: &Committed, count: i64) -> (Vec<u8>, usize) {
    let (lo, hi) = c.layout_for(count).unwrap().span();
    let origin = (-lo).max(0) as usize;
    let len = (origin as i128 + hi).max(0) as usize;
    ((0..len).map(|i| (i * 7 + 3) as u8).collect(), origin)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn cpu_pack_unpack_match_the_typemap_walk(t in arb_type(4), count in 1i64..4) {
        let c = Committed::new(&t).unwrap();
        let (src, origin) = buffer_for(&c, count);
        let want = naive_pack(&t, &src, origin, count);
        prop_assert_eq!(want.len(), c.pack_size(count).unwrap());
        let mut packed = vec![0u8; want.len() + 5];
        let mut pos = 5;
        c.pack(&src, origin, count, &mut packed, &mut pos).unwrap();
        prop_assert_eq!(pos, want.len() + 5);
        prop_assert_eq!(&packed[5..], &want[..]);

        let mut got = vec![0u8; src.len()];
        let mut expect = vec![0u8; src.len()];
        let mut pos = 5;
        c.unpack(&packed, &mut pos, &mut got, origin, count).unwrap();
        naive_unpack(&t, &want, &mut expect, origin, count);
        prop_assert_eq!(got, expect);
        prop_assert_eq!(pos, packed.len());
    }

    #[test]
    fn canonical_layout_preserves_the_typemap(t in arb_type(4)) {
        let l = layout(&t);
        let mut runs = Vec::new();
        l.for_each_run(|o, n| runs.push((o, n as i64)));
        // Merge the reference's runs the same way: adjacent ones join.
        let mut want: Vec<(i64, i64)> = Vec::new();
        for (d, n) in t.typemap() {
            match want.last_mut() {
                Some(last) if last.0 + last.1 == d => last.1 += n,
                _ => want.push((d, n)),
            }
        }
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (d, n) in runs {
            match merged.last_mut() {
                Some(last) if last.0 + last.1 == d => last.1 += n,
                _ => merged.push((d, n)),
            }
        }
        prop_assert_eq!(merged, want);
        prop_assert_eq!(l.segment_bytes() * l.positions(), t.size() as u64);
    }
}

/// Whether two typemap entries of `count` elements cover the same byte
/// (unpacking such a type is order-dependent, so racy on a GPU).
fn overlaps(c: &Committed, count: i64) -> bool {
    let mut runs = Vec::new();
    c.layout_for(count).unwrap().for_each_run(|o, n| runs.push((o, o + n as i64)));
    runs.sort();
    runs.windows(2).any(|w| w[1].0 < w[0].1)
}

#[cfg(feature = "emu")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]
    #[test]
    fn emulated_kernels_match_cpu(t in arb_type(4), count in 1i64..4, pos in 0u64..9) {
        let emu = crate::emu::Emulator::new();
        let c = Committed::new(&t).unwrap();
        let (src, origin) = buffer_for(&c, count);
        let n = c.pack_size(count).unwrap();
        let mut want = vec![0xA5u8; n + pos as usize];
        let mut p = pos as usize;
        c.pack(&src, origin, count, &mut want, &mut p).unwrap();
        let mut got = vec![0xA5u8; n + pos as usize];
        let mut p = pos;
        c.pack_emu(&emu, &src, origin as u64, count, &mut got, &mut p).unwrap();
        prop_assert_eq!(p as usize, n + pos as usize);
        prop_assert_eq!(&got, &want);

        if !overlaps(&c, count) {
            let mut expect = vec![0u8; src.len()];
            let mut back = vec![0u8; src.len()];
            let mut p = pos as usize;
            c.unpack(&want, &mut p, &mut expect, origin, count).unwrap();
            let mut p = pos;
            c.unpack_emu(&emu, &want, &mut p, &mut back, origin as u64, count).unwrap();
            prop_assert_eq!(back, expect);
        }
    }
}

#[cfg(feature = "emu")]
#[test]
fn emulated_kernels_cover_every_word_size_and_the_segment_table() {
    let emu = crate::emu::Emulator::new();
    let cases: Vec<(Datatype, &str)> = vec![
        (Datatype::byte().vector(100, 3, 7).unwrap(), "memwall_pack_strided_w1"),
        (Datatype::named(Primitive::I16).vector(100, 3, 7).unwrap(), "memwall_pack_strided_w2"),
        (int().vector(100, 3, 7).unwrap(), "memwall_pack_strided_w4"),
        (double().vector(100, 3, 7).unwrap(), "memwall_pack_strided_w8"),
        (double().vector(100, 4, 6).unwrap(), "memwall_pack_strided_w16"),
        (double().subarray(&[9, 10, 11], &[3, 4, 5], &[1, 2, 3], Order::C).unwrap(), "memwall_pack_strided_w8"),
        (int().indexed(&[3, 1, 2], &[0, 5, 9]).unwrap(), "memwall_pack_segments"),
        (
            Datatype::byte().subarray(&[3; 10], &[2; 10], &[1; 10], Order::C).unwrap(), // 9 dims: folded into segments
            "memwall_pack_segments",
        ),
    ];
    for (t, kernel) in cases {
        let c = Committed::new(&t).unwrap();
        let count = 3;
        let (src, origin) = buffer_for(&c, count);
        // 16-byte aligned copies so the widest word can be chosen.
        let mut src16 = vec![0u128; src.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<u128, u8>(&mut src16)[..src.len()].copy_from_slice(&src);
        let src = bytemuck::cast_slice::<u128, u8>(&src16);
        let n = c.pack_size(count).unwrap();
        let plan = c.gpu_plan(count, origin as u64, 0, PackDirection::Pack, 256, 256).unwrap().plan;
        assert_eq!(plan.kernel, kernel, "{t:?}");
        let mut want = vec![0u8; n];
        c.pack(src, origin, count, &mut want, &mut 0).unwrap();
        let mut got16 = vec![0u128; n.div_ceil(16)];
        let got = &mut bytemuck::cast_slice_mut::<u128, u8>(&mut got16)[..n];
        c.pack_emu(&emu, src, origin as u64, count, got, &mut 0).unwrap();
        assert_eq!(got, &want[..], "{kernel}");
    }
}

#[cfg(feature = "emu")]
#[test]
fn emulated_kernels_handle_data_entirely_before_the_origin() {
    // Found by the property test: every byte of these types lies at a
    // negative displacement, so the typed pointer must not be placed at
    // the origin (past the end of the data).
    let emu = crate::emu::Emulator::new();
    for t in [
        int().hindexed(&[1, 1, 1], &[-20, -10, -8]).unwrap(), // segment kernel, data ends 4 bytes before the origin
        int().hindexed(&[1], &[-20]).unwrap(),                // strided kernel
        int().vector(3, 1, -2).unwrap().resized(0, 4).unwrap().hindexed(&[1], &[-8]).unwrap(),
    ] {
        let c = Committed::new(&t).unwrap();
        for count in [1, 2] {
            let (src, origin) = buffer_for(&c, count);
            let mut want = vec![0u8; c.pack_size(count).unwrap()];
            c.pack(&src, origin, count, &mut want, &mut 0).unwrap();
            let mut got = vec![0u8; want.len()];
            c.pack_emu(&emu, &src, origin as u64, count, &mut got, &mut 0).unwrap();
            assert_eq!(got, want, "{t:?} x {count}");
        }
    }
}

/// Packs over [`pack_cpu`]'s streaming threshold (4 MiB) take the
/// non-temporal paths: 16-byte stores for short runs, whole lines with
/// ordinary or 16-byte streaming edges for long ones. Every run length and
/// dense alignment must give the same bytes as the typemap walk.
#[test]
fn streaming_packs_match_the_reference_at_every_alignment() {
    let byte = Datatype::byte();
    for &(block, stride) in &[(16i64, 48i64), (48, 64), (128, 256), (130, 260), (512, 1024), (1000, 1500)] {
        let rows = (5 << 20) / block + 1;
        let t = byte.contiguous(block).unwrap().hvector(rows, 1, stride).unwrap();
        let c = Committed::new(&t).unwrap();
        let n = c.pack_size(1).unwrap();
        assert!(n >= 5 << 20);
        let span = ((rows - 1) * stride + block) as usize;
        let src: Vec<u8> = (0..span + 7).map(|i| (i * 131 + i / 251) as u8).collect();
        let mut want = Vec::with_capacity(n);
        for r in 0..rows as usize {
            let at = 7 + r * stride as usize;
            want.extend_from_slice(&src[at..at + block as usize]);
        }
        for lead in [0usize, 5, 16, 48, 64] {
            let mut dst = vec![0xA5u8; lead + n + 3];
            let mut pos = lead;
            c.pack(&src, 7, 1, &mut dst, &mut pos).unwrap();
            assert_eq!(pos, lead + n);
            assert!(dst[..lead].iter().all(|&b| b == 0xA5), "block {block}: bytes before the position changed");
            assert!(dst[lead + n..].iter().all(|&b| b == 0xA5), "block {block}: bytes past the end changed");
            assert!(dst[lead..lead + n] == want[..], "block {block}, position {lead}: packed bytes differ");
        }
    }
}
