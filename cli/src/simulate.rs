//! `memwall simulate-experts`: expert-cache policies replayed on a routing
//! trace (e.g. one `memwall demo --routing-trace` wrote).

use std::path::Path;

use memwall_tiers::clients::expert::{simulate, SimPolicy, Trace};

/// Prints hit rates of LRU, LFU, prediction-driven and Belady (the offline
/// ceiling) for each capacity.
pub fn run(path: &Path, capacities: &[usize]) -> Result<(), String> {
    let trace = Trace::load(path).map_err(|e| e.to_string())?;
    println!(
        "trace {}: {} layers x {} experts, {} accesses, prediction accuracy {:.0}%",
        path.display(),
        trace.layers,
        trace.experts,
        trace.access_count(),
        100.0 * trace.prediction_accuracy()
    );
    println!("| capacity | LRU | LFU | predicted | Belady |");
    println!("| --- | --- | --- | --- | --- |");
    for &c in capacities {
        let rate = |p| 100.0 * simulate(&trace, c, p).hit_rate();
        println!(
            "| {c} | {:.1}% | {:.1}% | {:.1}% | {:.1}% |",
            rate(SimPolicy::Lru),
            rate(SimPolicy::Lfu),
            rate(SimPolicy::Predicted),
            rate(SimPolicy::Belady)
        );
    }
    Ok(())
}
