//! Every launch plan memwall builds matches its kernel's compiled signature,
//! and every compiled kernel entry has a plan.

use std::collections::BTreeSet;

use memwall::gpu::ptx;

#[test]
fn every_sample_plan_matches_its_ptx_entry() {
    for plan in memwall::sample_plans() {
        plan.validate().unwrap_or_else(|e| panic!("{e}"));
        plan.check_signature().unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn every_ptx_entry_has_a_sample_plan() {
    let planned: BTreeSet<(&str, &str)> = memwall::sample_plans().iter().map(|p| (p.module, p.kernel)).collect();
    let mut missing = Vec::new();
    for m in ptx::MODULES {
        for e in ptx::parse_entries(m.ptx).unwrap() {
            if !planned.contains(&(m.name, e.name.as_str())) {
                missing.push(format!("{}::{}", m.name, e.name));
            }
        }
    }
    assert!(missing.is_empty(), "PTX entries with no plan builder: {missing:?}");
}
