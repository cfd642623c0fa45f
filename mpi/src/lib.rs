//! memwall-mpi: the `LD_PRELOAD` MPI interposer (`libmemwall_mpi.so`).
//!
//! ```sh
//! LD_PRELOAD=target/release/libmemwall_mpi.so mpirun -np 4 ./app
//! ```
//!
//! It defines `MPI_Init`, `MPI_Init_thread`, `MPI_Finalize`,
//! `MPI_Type_commit`, `MPI_Type_free`, `MPI_Pack`, `MPI_Unpack`, `MPI_Send`,
//! `MPI_Recv`, `MPI_Isend`, `MPI_Irecv`, `MPI_Sendrecv`, `MPI_Wait`,
//! `MPI_Waitall`, `MPI_Test` (and the other completion calls and
//! `MPI_Request_free`, so every request it starts is finished) and forwards
//! each to the next definition (`dlsym(RTLD_NEXT)`), so PMPI tools chain.
//! Committed derived types are read into memwall's datatype engine
//! ([`decode`]); host buffers pack on the CPU, device buffers on the GPU
//! ([`model`] picks how their bytes travel). Everything it cannot express
//! goes to the library untouched. Settings: [`config`].
//!
//! The MPI ABI (handle widths, constants) comes from the build: `build.rs`
//! probes the MPI found by `mpicc` and compiles the C shim `csrc/shim.c`.
//! Built without MPI, the library defines no MPI symbol at all
//! ([`interposer_built`] is false): preloading it changes nothing.

pub mod config;
pub mod decode;
pub mod device;
pub mod handle_map;
pub mod host;
pub mod ipc_memory;
mod keep_context;
pub mod model;
pub mod pool;
pub mod stats;
pub mod types;

#[cfg(memwall_mpi)]
pub mod abi;
#[cfg(memwall_mpi)]
mod entry;
#[cfg(memwall_mpi)]
pub mod message;
#[cfg(memwall_mpi)]
pub mod real;
#[cfg(memwall_mpi)]
pub mod requests;
#[cfg(memwall_mpi)]
pub mod shim;
#[cfg(memwall_mpi)]
pub mod state;

mod exports;

pub use exports::{memwall_mpi_interposer_built, memwall_mpi_version};

/// Whether this build defines the MPI entry points (MPI was found at build
/// time). Without it the library is a pure passthrough.
pub fn interposer_built() -> bool {
    cfg!(memwall_mpi)
}

/// The MPI implementation the interposer was built against, if any.
pub fn built_with() -> Option<&'static str> {
    option_env!("MEMWALL_MPI_BUILT_WITH")
}
