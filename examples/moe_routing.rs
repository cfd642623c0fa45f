//! MoE++ routing with zero-computation experts for 64 tokens: gating with a
//! gating residual, dispatch of the FFN experts, a stand-in FFN, combine.
//! `cargo run --example moe_routing`
use memwall::moe::{combine, dispatch, route, CombineInputs, ExpertLayout, GateInputs, MoeConfig, Residual};

fn main() -> memwall::Result<()> {
    let cfg = MoeConfig::new(ExpertLayout::paper(20).expect("a paper layout")); // 16 FFN + 2 const + copy + zero
    let (tokens, hidden, n) = (64u32, 32u32, 20usize);
    let wave = |i: usize, f: f32| ((i as f32) * f).sin();
    let logits: Vec<f32> = (0..tokens as usize * n).map(|i| 3.0 * wave(i, 0.37)).collect();
    let prev: Vec<f32> = (0..tokens as usize * n).map(|i| wave(i, 0.11)).collect();
    let wg: Vec<f32> = (0..n * n).map(|i| 0.1 * wave(i, 0.7)).collect();
    let x: Vec<f32> = (0..(tokens * hidden) as usize).map(|i| wave(i, 0.05)).collect();
    let wc: Vec<f32> = (0..2 * 2 * hidden as usize).map(|i| 0.2 * wave(i, 0.3)).collect();
    let v: Vec<f32> = (0..2 * hidden as usize).map(|i| wave(i, 0.9)).collect();

    let r = route(
        &cfg,
        &GateInputs {
            tokens,
            hidden,
            logits: &logits,
            residual: Some(Residual { prev_logits: &prev, wg: &wg }),
            x: &x,
            wc: &wc,
        },
    )?;
    let d = dispatch(&cfg, &r, tokens);
    // A stand-in FFN: every expert doubles its tokens' hidden states.
    let mut rows = vec![0f32; cfg.max_rows(tokens) as usize * hidden as usize];
    for (row, &t) in d.sorted_tokens.iter().enumerate() {
        if t >= 0 {
            let (h, t) = (hidden as usize, t as usize);
            for i in 0..h {
                rows[row * h + i] = 2.0 * x[t * h + i];
            }
        }
    }
    let mut out = vec![0f32; x.len()];
    combine(&cfg, &r, &d, &CombineInputs { x: &x, expert_out: &rows, v: &v, hidden }, &mut out)?;
    let ffn_slots = d.slot_rows.iter().filter(|&&row| row >= 0).count();
    println!("{ffn_slots} of {} slots went to FFN experts; L_b = {:.4}", r.ids.len(), r.stats.lb);
    println!("rows per FFN expert: {:?}", d.expert_counts);
    assert_eq!(d.expert_counts.iter().sum::<u32>() as usize, ffn_slots);
    Ok(())
}
