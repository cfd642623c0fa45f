//! `memwall simulate-experts`: expert-cache policies replayed on a routing
//! trace (e.g. one `memwall demo --routing-trace` wrote).

use std::path::Path;

use memwall_tiers::clients::expert::{simulate, SimPolicy, Trace};

/// Prints hit and stall-free rates of LRU, LFU, prediction-driven and Belady (the offline
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
    println!("hit rate (accesses needing no transfer of their own; Belady is the ceiling) / stall-free rate");
    println!("(accesses that found their expert resident: what prefetching buys, since prefetches overlap compute)");
    println!("| capacity | LRU | LFU | predicted | Belady |");
    println!("| --- | --- | --- | --- | --- |");
    for &c in capacities {
        let cell = |p| {
            let r = simulate(&trace, c, p);
            format!("{:.1}% / {:.1}%", 100.0 * r.hit_rate(), 100.0 * r.stall_free_rate())
        };
        println!(
            "| {c} | {} | {} | {} | {} |",
            cell(SimPolicy::Lru),
            cell(SimPolicy::Lfu),
            cell(SimPolicy::Predicted),
            cell(SimPolicy::Belady)
        );
    }
    Ok(())
}
