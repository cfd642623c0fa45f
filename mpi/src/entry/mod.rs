//! The exported MPI entry points, grouped by job. Each one forwards to the
//! next definition (see [`crate::real`]) unless the interposer is active and
//! takes the call; see [`crate::state::intercept`].

#![allow(non_snake_case)]

mod complete;
mod init;
mod p2p;
mod pack;
mod types;
