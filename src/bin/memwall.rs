//! The `memwall` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// memwall: break the GPU memory wall for LLM and MoE work.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print memwall's version, the embedded PTX, and the CUDA driver and
    /// devices of this machine (or that there are none: CPU only).
    Info,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Info => {
            print!("{}", memwall::info::SystemInfo::collect());
            ExitCode::SUCCESS
        }
    }
}
