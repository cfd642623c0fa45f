use super::ptx::{parse_entries, ParamType};
use super::*;

fn plan() -> LaunchPlan {
    LaunchPlan {
        module: "strided_copy",
        kernel: "memwall_strided_copy_w1",
        grid: Dim3::x(1),
        block: Dim3::x(32),
        dynamic_smem_bytes: 0,
        args: vec![
            KernelArg::Buffer { slot: 0, offset: 0 },
            KernelArg::Buffer { slot: 1, offset: 0 },
            KernelArg::U64(1),
            KernelArg::U64(1),
            KernelArg::I64(1),
            KernelArg::I64(1),
        ],
        buffers: vec![
            BufferUse { name: "src", access: Access::Read, min_bytes: 1, align: 1 },
            BufferUse { name: "dst", access: Access::Write, min_bytes: 1, align: 1 },
        ],
    }
}

#[test]
fn parses_entries_with_pointer_and_array_params() {
    let ptx = "\
.visible .entry k1(
\t.param .u64 .ptr .global .align 4 k1_param_0,
\t.param .f32 k1_param_1,
\t.param .align 8 .b8 k1_param_2[24]
)
{ ret; }
.visible .entry k2()
{ ret; }
";
    let e = parse_entries(ptx).unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].name, "k1");
    assert_eq!(
        e[0].params,
        vec![
            ParamType { ty: "u64".into(), size: 8 },
            ParamType { ty: "f32".into(), size: 4 },
            ParamType { ty: "b8".into(), size: 24 }
        ]
    );
    assert!(e[1].params.is_empty());
}

#[test]
fn signature_check_catches_count_size_and_kind() {
    plan().check_signature().unwrap();

    let mut p = plan();
    p.args.pop();
    let e = p.check_signature().unwrap_err().to_string();
    assert!(e.contains("5 arguments planned, the PTX entry takes 6"), "{e}");

    let mut p = plan();
    p.args[2] = KernelArg::U32(1);
    let e = p.check_signature().unwrap_err().to_string();
    assert!(e.contains("argument 2") && e.contains("4 bytes") && e.contains(".u64"), "{e}");

    let mut p = plan();
    p.args[3] = KernelArg::F64(1.0);
    assert!(p.check_signature().is_err(), "a double where the kernel takes u64");

    let mut p = plan();
    p.kernel = "memwall_no_such_kernel";
    assert!(matches!(p.check_signature(), Err(crate::Error::UnknownKernel { .. })));

    let mut p = plan();
    p.module = "no_such_module";
    assert!(matches!(p.check_signature(), Err(crate::Error::UnknownModule { .. })));
}

#[test]
fn validate_rejects_impossible_launches() {
    plan().validate().unwrap();
    type Mutation = fn(&mut LaunchPlan);
    let cases: Vec<(Mutation, &str)> = vec![
        (|p| p.grid = Dim3::x(0), "grid (0, 1, 1)"),
        (|p| p.grid = Dim3 { x: 1, y: 65536, z: 1 }, "grid (1, 65536, 1)"),
        (|p| p.block = Dim3::x(1025), "1025 threads"),
        (|p| p.block = Dim3 { x: 1, y: 1, z: 65 }, "z <= 64"),
        (|p| p.dynamic_smem_bytes = 300_000, "300000 bytes of dynamic shared memory"),
        (|p| p.args[0] = KernelArg::Buffer { slot: 2, offset: 0 }, "buffer slot 2"),
        (|p| p.args[1] = KernelArg::Buffer { slot: 1, offset: 2 }, "offset 2 past the 1 bytes"),
        (|p| p.buffers[0].align = 3, "alignment 3"),
        (
            |p| p.args[1] = KernelArg::Buffer { slot: 0, offset: 0 },
            "buffer 1 (dst) is declared but no argument uses it",
        ),
    ];
    for (mutate, expect) in cases {
        let mut p = plan();
        mutate(&mut p);
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains(expect), "expected {expect:?} in {e:?}");
    }
}

#[test]
fn embedded_modules_are_present_and_target_compute_80() {
    assert!(!ptx::MODULES.is_empty());
    for m in ptx::MODULES {
        assert!(m.ptx.contains(".target sm_80"), "{} targets compute_80", m.name);
        assert!(m.source.ends_with(".cu"));
    }
    assert_eq!(ptx::ptx_isa_version(), Some("9.0"));
}

#[test]
fn without_a_driver_gpu_new_is_an_error_not_a_panic() {
    if driver_present() {
        return; // covered by the GPU suite
    }
    assert!(matches!(Gpu::new(0), Err(crate::Error::NoDriver)));
    assert!(matches!(device_count(), Err(crate::Error::NoDriver)));
    assert!(matches!(driver_version(), Err(crate::Error::NoDriver)));
}

#[test]
fn bindings_are_checked_for_access_length_and_alignment() {
    let mut p = plan();
    p.buffers[1].min_bytes = 64;
    p.buffers[1].align = 16;
    p.check_before_launch(2).unwrap();
    let e = p.check_before_launch(3).unwrap_err().to_string();
    assert!(e.contains("3 buffers bound, the plan declares 2"), "{e}");
    p.check_binding(1, true, 0x1000, 64).unwrap();
    let e = p.check_binding(1, false, 0x1000, 64).unwrap_err().to_string();
    assert!(e.contains("buffer 1 (dst)") && e.contains("bound read-only"), "{e}");
    let e = p.check_binding(1, true, 0x1000, 63).unwrap_err().to_string();
    assert!(e.contains("63 bytes bound, the plan needs 64"), "{e}");
    let e = p.check_binding(1, true, 0x1008, 64).unwrap_err().to_string();
    assert!(e.contains("address 0x1008 is not 16-byte aligned"), "{e}");
    // Read slots accept writable buffers; values resolve buffer slots.
    p.check_binding(0, true, 0x2000, 1).unwrap();
    let v = p.arg_values(&[0x2000, 0x3000]);
    assert_eq!(v[0], ArgValue::U64(0x2000));
    assert_eq!(v[1], ArgValue::U64(0x3000));
    assert_eq!(v[2], ArgValue::U64(1));
}
