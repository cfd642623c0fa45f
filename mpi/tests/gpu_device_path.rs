//! The interposer's device path on a real GPU, without MPI: every method's
//! staging (`stage_out`, `stage_in` + `finish_in`) and `pack_or_unpack`
//! against memwall's CPU pack of the same bytes; buffers handed to MPI can
//! be exported with `cuIpcGetMemHandle` (CUDA-aware MPI shares them so);
//! and the caller's current context survives every call. Skips without a
//! driver (fails under MEMWALL_REQUIRE_GPU=1).

use memwall::datatype::{Committed, Datatype, Primitive};
use memwall::gpu::cuda::{sys, DevicePtr};
use memwall::gpu::gpu_or_skip;
use memwall_mpi::device::{self, Wire};
use memwall_mpi::model::Method;

fn current_context() -> sys::CUcontext {
    let mut ctx: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: a valid out pointer; the driver is initialised (a Gpu opened).
    let rc = unsafe { sys::cuCtxGetCurrent(&mut ctx) };
    assert_eq!(rc, sys::CUresult::CUDA_SUCCESS);
    ctx
}

/// Unbinds any context, runs `f`, and checks none is bound after it.
fn keeps_no_context<T>(what: &str, f: impl FnOnce() -> T) -> T {
    // SAFETY: null unbinds the thread's context.
    unsafe { sys::cuCtxSetCurrent(std::ptr::null_mut()) };
    let r = f();
    assert!(current_context().is_null(), "{what} left its context bound on the caller's thread");
    r
}

fn host_of(wire: &Wire, ordinal: usize) -> Vec<u8> {
    let mut out = vec![0u8; wire.len()];
    device::copy(ordinal, out.as_mut_ptr() as u64, wire.ptr() as u64, wire.len()).unwrap();
    out
}

#[test]
fn gpu_device_path_matches_the_cpu_pack_for_every_method() {
    let Some(gpu) = gpu_or_skip("gpu_device_path_matches_the_cpu_pack_for_every_method") else { return };
    let stream = gpu.new_stream().unwrap();
    // 3 elements of a vector of f64 pairs, stride 3: gaps in each element.
    let t = Datatype::named(Primitive::F64).vector(40, 2, 3).unwrap();
    let c = Committed::new(&t).unwrap();
    let count = 3i64;
    let span = (c.datatype().extent() * count) as usize;
    let typed: Vec<u8> = (0..span).map(|i| (i * 7 + 3) as u8).collect();
    let mut want = vec![0u8; c.pack_size(count).unwrap()];
    c.pack(&typed, 0, count, &mut want, &mut 0).unwrap();
    let dtyped = stream.clone_htod(&typed).unwrap();
    let (addr, guard) = dtyped.device_ptr(&stream);
    drop(guard);
    stream.synchronize().unwrap();
    let src = device::locate(addr as *const _).expect("a device pointer is located");

    for method in Method::ALL {
        let what = format!("{method:?}");
        let wire = keeps_no_context("stage_out", || device::stage_out(&c, src, count, method).unwrap());
        keeps_no_context("Wire::ptr", || wire.ptr());
        assert_eq!(host_of(&wire, src.ordinal), want, "{what}: packed bytes");
        if let Wire::Device { .. } = &wire {
            gpu.context().bind_to_thread().unwrap();
            let mut handle = sys::CUipcMemHandle_st { reserved: [0; 64] };
            // SAFETY: a valid out pointer and a live device allocation.
            let rc = unsafe { sys::cuIpcGetMemHandle(&mut handle, wire.ptr() as u64) };
            assert!(
                matches!(rc, sys::CUresult::CUDA_SUCCESS | sys::CUresult::CUDA_ERROR_NOT_SUPPORTED),
                "{what}: MPI's device buffer refuses cuIpcGetMemHandle ({rc:?}): pool memory?"
            );
        }
        keeps_no_context("dropping a wire", || drop(wire));

        // Receive: the packed bytes land in the wire, then unpack.
        let back = stream.alloc_zeros::<u8>(span).unwrap();
        let (dst_addr, guard) = back.device_ptr(&stream);
        drop(guard);
        stream.synchronize().unwrap();
        let dst = device::locate(dst_addr as *const _).unwrap();
        let wire = keeps_no_context("stage_in", || device::stage_in(dst.ordinal, want.len(), method).unwrap());
        device::copy(dst.ordinal, wire.ptr() as u64, want.as_ptr() as u64, want.len()).unwrap();
        keeps_no_context("finish_in", || device::finish_in(&c, wire, want.len(), dst, count).unwrap());
        let got = stream.clone_dtoh(&back).unwrap();
        let mut expect = vec![0u8; span];
        c.unpack(&want, &mut 0, &mut expect, 0, count).unwrap();
        assert_eq!(got, expect, "{what}: unpacked bytes");
    }

    // MPI_Pack / MPI_Unpack with a device typed buffer and a host packed one.
    let mut packed = vec![0u8; want.len()];
    keeps_no_context("pack_or_unpack", || {
        device::pack_or_unpack(&c, src, count, packed.as_mut_ptr() as u64, false).unwrap()
    });
    assert_eq!(packed, want, "pack_or_unpack: pack");
    let back = stream.alloc_zeros::<u8>(span).unwrap();
    let (dst_addr, guard) = back.device_ptr(&stream);
    drop(guard);
    stream.synchronize().unwrap();
    let dst = device::locate(dst_addr as *const _).unwrap();
    device::pack_or_unpack(&c, dst, count, packed.as_ptr() as u64, true).unwrap();
    let mut expect = vec![0u8; span];
    c.unpack(&want, &mut 0, &mut expect, 0, count).unwrap();
    assert_eq!(stream.clone_dtoh(&back).unwrap(), expect, "pack_or_unpack: unpack");
}

/// A send buffer written on the legacy default stream, with no
/// synchronization before the pack (as an unchanged CUDA-aware program may
/// do), is packed after that write: the interposer's non-blocking stream
/// waits for the default streams.
#[test]
fn gpu_device_path_packs_after_work_on_the_default_stream() {
    let Some(gpu) = gpu_or_skip("gpu_device_path_packs_after_work_on_the_default_stream") else { return };
    let stream = gpu.new_stream().unwrap();
    const LEGACY: sys::CUstream = 0x1 as sys::CUstream;
    let t = Datatype::named(Primitive::F64).vector(1 << 16, 1, 2).unwrap();
    let c = Committed::new(&t).unwrap();
    let span = c.datatype().extent() as usize;
    let typed = stream.alloc_zeros::<u8>(span).unwrap();
    // Keeps the legacy stream busy for a while before the write that counts.
    let busy = stream.alloc_zeros::<u8>(1 << 30).unwrap();
    stream.synchronize().unwrap();
    let ((addr, g1), (busy_addr, g2)) = (typed.device_ptr(&stream), busy.device_ptr(&stream));
    drop((g1, g2));
    let src = device::locate(addr as *const _).unwrap();
    for round in 0..4u8 {
        let value = 0x40 + round;
        gpu.context().bind_to_thread().unwrap();
        // SAFETY: live device allocations of these sizes in the bound
        // context; the legacy stream handle is the driver's.
        unsafe {
            for _ in 0..4 {
                assert_eq!(sys::cuMemsetD8Async(busy_addr, round, 1 << 30, LEGACY), sys::CUresult::CUDA_SUCCESS);
            }
            assert_eq!(sys::cuMemsetD8Async(addr, value, span, LEGACY), sys::CUresult::CUDA_SUCCESS);
        }
        let wire = device::stage_out(&c, src, 1, Method::Device).unwrap();
        let got = host_of(&wire, src.ordinal);
        assert!(got.iter().all(|&b| b == value), "round {round}: the pack ran before the default stream's write");
    }
}
