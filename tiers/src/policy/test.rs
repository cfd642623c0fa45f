use super::*;

fn cand(id: u64, class: ObjectClass, priority: u8, last_use: u64, uses: u64) -> Candidate {
    Candidate { id: ObjectId(id), class, priority, size: 4096, tier: Tier::Ddr, last_use, uses, dirty: false }
}

fn victim(p: &dyn Policy, cs: &[Candidate], now: u64) -> u64 {
    cs.iter().min_by(|a, b| p.rank(a, now).total_cmp(&p.rank(b, now))).unwrap().id.0
}

#[test]
fn lru_evicts_the_least_recent() {
    let cs = [
        cand(1, ObjectClass::Other, 0, 30, 1),
        cand(2, ObjectClass::Other, 0, 10, 99),
        cand(3, ObjectClass::Other, 0, 20, 1),
    ];
    assert_eq!(victim(&Lru, &cs, 40), 2);
}

#[test]
fn frequency_keeps_hot_copies_and_ages_them() {
    let p = FrequencyAware { half_life: 10 };
    let hot = cand(1, ObjectClass::Other, 0, 100, 50);
    let cold = cand(2, ObjectClass::Other, 0, 101, 2);
    assert_eq!(victim(&p, &[hot.clone(), cold.clone()], 102), 2);
    // 1000 ticks later the once-hot copy, unused since, has cooled below a
    // copy used 5 times recently.
    let warm = cand(3, ObjectClass::Other, 0, 1100, 5);
    assert_eq!(victim(&p, &[hot, warm], 1101), 1);
    // Equal uses: the least recent goes first.
    let a = cand(4, ObjectClass::Other, 0, 50, 3);
    let b = cand(5, ObjectClass::Other, 0, 60, 3);
    assert_eq!(victim(&p, &[b, a], 60), 4);
}

#[test]
fn class_priority_orders_by_class_then_priority_then_recency() {
    let p = ClassPriority::default();
    let expert = cand(1, ObjectClass::Expert, 0, 1, 1);
    let opt = cand(2, ObjectClass::OptimizerState, 0, 100, 1);
    let kv = cand(3, ObjectClass::KvBlock, 0, 2, 1);
    assert_eq!(victim(&p, &[expert.clone(), opt, kv.clone()], 200), 2);
    assert_eq!(victim(&p, &[expert.clone(), kv], 200), 3);
    let expert_hi = cand(4, ObjectClass::Expert, 9, 0, 1);
    assert_eq!(victim(&p, &[expert_hi.clone(), expert], 200), 1);
    let expert_hi_recent = cand(5, ObjectClass::Expert, 9, 150, 1);
    assert_eq!(victim(&p, &[expert_hi_recent, expert_hi], 200), 4);
    let custom = ClassPriority { expert: 0, optimizer_state: 5, kv_block: 5, other: 5 };
    let opt = cand(6, ObjectClass::OptimizerState, 0, 0, 1);
    assert_eq!(victim(&custom, &[opt, cand(7, ObjectClass::Expert, 0, 99, 1)], 200), 7);
}

#[test]
fn builtins_have_names() {
    assert_eq!(builtin(PolicyKind::Lru).name(), "lru");
    assert_eq!(builtin(PolicyKind::Frequency).name(), "frequency");
    assert_eq!(builtin(PolicyKind::ClassPriority).name(), "class");
}
