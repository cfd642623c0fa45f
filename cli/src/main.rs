//! The `memwall` command line.

mod demo;
mod measure;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// memwall: break the GPU memory wall for LLM and MoE work.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Write a Chrome/Perfetto trace of transfers and compute to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    trace: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print memwall's version, the embedded PTX, and the CUDA driver and
    /// devices of this machine (or that there are none: CPU only).
    Info,
    /// Generate tokens with an MoE++ decoder stack whose experts are paged
    /// across the memory tiers and whose waiting sequences' KV caches are
    /// swapped out; checks the tokens against a non-paged run.
    Demo(demo::DemoArgs),
    /// Replay a routing trace (from `memwall demo --routing-trace`) through
    /// the expert-cache policies: LRU, LFU, prediction-driven, and Belady's
    /// offline optimum as the ceiling.
    SimulateExperts {
        /// The routing trace file.
        #[arg(value_name = "TRACE")]
        routing_trace: PathBuf,
        /// Cache capacities in experts.
        #[arg(long, value_delimiter = ',', default_values_t = vec![8, 16, 32])]
        capacity: Vec<usize>,
    },
    /// Measure this machine's bandwidths (DDR, files, CPU and GPU pack, host
    /// <-> device copies) and write the profile the MPI interposer reads
    /// (and the demo compares its pager with).
    Measure {
        /// Where to write the profile (default: $MEMWALL_PROFILE, else
        /// $XDG_CACHE_HOME/memwall/profile.toml, the cache dir defaulting to
        /// ~/.cache).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Folder for the file-bandwidth test (default: the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Short runs (seconds instead of tens of seconds).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.trace.is_some() {
        memwall::trace::enable();
    }
    let code = match cli.command {
        Command::Info => {
            print!("{}", memwall::info::SystemInfo::collect());
            ExitCode::SUCCESS
        }
        Command::Demo(args) => match demo::demo(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("memwall demo: {e}");
                ExitCode::FAILURE
            }
        },
        Command::SimulateExperts { routing_trace, capacity } => match simulate::run(&routing_trace, &capacity) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("memwall simulate-experts: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Measure { out, dir, quick } => {
            let dir = dir.unwrap_or_else(std::env::temp_dir);
            let profile = measure::measure(quick, Some(&dir));
            let path = out.unwrap_or_else(memwall::profile::Profile::default_path);
            match profile.save(&path) {
                Ok(()) => {
                    println!("{}", profile.to_text().trim_end());
                    println!("profile written to {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("memwall measure: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    };
    if let Some(path) = cli.trace {
        match memwall::trace::write(&path) {
            Ok(n) => eprintln!("trace: {n} events written to {}", path.display()),
            Err(e) => {
                eprintln!("memwall: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    code
}
