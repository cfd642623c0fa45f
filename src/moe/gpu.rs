//! Launch plans for `kernels/moe.cu`, and running them on the emulator.
//!
//! Five kernels per layer, each a plan over named buffers ([`Slots`] gives
//! every buffer's size): route, count, scan, scatter (routing and dispatch),
//! then combine once the FFN experts have produced their rows.

use crate::dtype::Dtype;
#[cfg(feature = "emu")]
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::gpu::{Access, Blob, BufferUse, Dim3, KernelArg, LaunchPlan};

use super::config::MoeConfig;

/// Tokens per chunk of the count and scatter kernels.
pub const CHUNK_TOKENS: u32 = 256;

/// Byte sizes of every buffer of a layer's plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    /// Router logits, T x N of the logits dtype.
    pub logits: u64,
    /// Previous raw logits, T x N f32 (when there is a residual).
    pub prev: u64,
    /// W_g, N x N f32 (when there is a residual).
    pub wg: u64,
    /// Hidden states, T x D of the activation dtype.
    pub x: u64,
    /// W_c, n_const x 2 x D f32.
    pub wc: u64,
    /// v, n_const x D f32.
    pub v: u64,
    /// Next layer's raw logits and the probabilities, T x N f32 each.
    pub t_by_n: u64,
    /// Top-k ids (i32), weights (f32) and slot rows (i32), T x k each.
    pub t_by_k: u64,
    /// `[a1, a2]` per slot, T x k x 2 f32.
    pub alpha: u64,
    /// Per-chunk FFN counts and offsets, chunks x n_ffn u32.
    pub chunk_ffn: u64,
    /// Per-chunk selections (u32) and probability sums (f32), chunks x N.
    pub chunk_all: u64,
    /// Expert row offsets, n_ffn + 1 u32.
    pub expert_offsets: u64,
    /// Rows kept per FFN expert, n_ffn u32.
    pub expert_counts: u64,
    /// f (N), P (N), L_b: 2N + 1 f32.
    pub stats: u64,
    /// Sorted tokens, max rows i32.
    pub sorted: u64,
    /// FFN outputs, max rows x D of the activation dtype.
    pub expert_out: u64,
    /// Layer output, T x D of the activation dtype.
    pub out: u64,
}

impl Slots {
    /// Sizes for `tokens` tokens of hidden size `hidden`.
    pub fn new(cfg: &MoeConfig, tokens: u32, hidden: u32, logits: Dtype, act: Dtype, has_prev: bool) -> Self {
        let (t, n, k, d) =
            (u64::from(tokens), u64::from(cfg.layout.experts()), u64::from(cfg.top_k), u64::from(hidden));
        let nf = u64::from(cfg.layout.n_ffn);
        let nc = u64::from(cfg.layout.n_const);
        let chunks = u64::from(tokens.div_ceil(CHUNK_TOKENS).max(1));
        let rows = cfg.max_rows(tokens);
        Slots {
            logits: t * n * logits.size(),
            prev: if has_prev { t * n * 4 } else { 0 },
            wg: if has_prev { n * n * 4 } else { 0 },
            x: t * d * act.size(),
            wc: nc * 2 * d * 4,
            v: nc * d * 4,
            t_by_n: t * n * 4,
            t_by_k: t * k * 4,
            alpha: t * k * 8,
            chunk_ffn: chunks * nf * 4,
            chunk_all: chunks * n * 4,
            expert_offsets: (nf + 1) * 4,
            expert_counts: nf * 4,
            stats: (2 * n + 1) * 4,
            sorted: rows * 4,
            expert_out: rows * d * act.size(),
            out: t * d * act.size(),
        }
    }
}

/// The five plans of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MoePlans {
    /// Slots: logits, prev, wg, x, wc, next_logits, probs, topk_ids, topk_w, alpha.
    pub route: LaunchPlan,
    /// Slots: topk_ids, probs, ffn_counts, selected, prob_sums.
    pub count: LaunchPlan,
    /// Slots: ffn_counts, selected, prob_sums, chunk_offsets, expert_offsets,
    /// expert_counts, stats, sorted_tokens.
    pub scan: LaunchPlan,
    /// Slots: topk_ids, chunk_offsets, expert_offsets, sorted_tokens, slot_rows.
    pub scatter: LaunchPlan,
    /// Slots: x, expert_out, v, topk_ids, topk_w, alpha, slot_rows, out.
    pub combine: LaunchPlan,
}

fn params(cfg: &MoeConfig, tokens: u32, hidden: u32, has_prev: bool) -> Blob {
    let l = &cfg.layout;
    let chunks = tokens.div_ceil(CHUNK_TOKENS).max(1);
    let fields: [u32; 17] = [
        tokens,
        l.experts(),
        l.n_ffn,
        l.n_const,
        l.n_copy,
        l.n_zero,
        cfg.top_k,
        u32::from(cfg.renorm == super::Renorm::ReferenceCode),
        u32::from(has_prev),
        u32::from(cfg.logits_norm_std.is_some()),
        cfg.logits_norm_std.unwrap_or(1.0).to_bits(),
        cfg.tau.to_bits(),
        hidden,
        CHUNK_TOKENS,
        chunks,
        cfg.pad_to,
        cfg.ffn_capacity(tokens),
    ];
    let mut words = [0u64; 16];
    for (i, f) in fields.iter().enumerate() {
        words[i / 2] |= u64::from(*f) << (32 * (i % 2));
    }
    Blob::from_words(&words).expect("16 words")
}

fn read(name: &'static str, bytes: u64, align: u64) -> BufferUse {
    BufferUse { name, access: Access::Read, min_bytes: bytes, align }
}

fn write(name: &'static str, bytes: u64, align: u64) -> BufferUse {
    BufferUse { name, access: Access::Write, min_bytes: bytes, align }
}

fn bufs(n: usize) -> impl Iterator<Item = KernelArg> {
    (0..n).map(|slot| KernelArg::Buffer { slot, offset: 0 })
}

/// The plans for `tokens` tokens of hidden size `hidden`, logits of dtype
/// `logits` and activations of dtype `act`.
pub fn plans(cfg: &MoeConfig, tokens: u32, hidden: u32, logits: Dtype, act: Dtype, has_prev: bool) -> Result<MoePlans> {
    cfg.validate()?;
    if tokens == 0 {
        return Err(Error::invalid("tokens", 0, "route at least one token"));
    }
    if hidden == 0 {
        return Err(Error::invalid("hidden", 0, "must be at least 1"));
    }
    let s = Slots::new(cfg, tokens, hidden, logits, act, has_prev);
    let p = KernelArg::Blob(params(cfg, tokens, hidden, has_prev));
    let chunks = tokens.div_ceil(CHUNK_TOKENS).max(1);
    let a = act.size();
    let with = |args: usize| std::iter::once(p).chain(bufs(args)).collect::<Vec<_>>();
    let route_kernel: &'static str = match (logits, act) {
        (Dtype::F32, Dtype::F32) => "memwall_moe_route_f32_f32",
        (Dtype::F32, Dtype::F16) => "memwall_moe_route_f32_f16",
        (Dtype::F32, Dtype::BF16) => "memwall_moe_route_f32_bf16",
        (Dtype::F16, Dtype::F32) => "memwall_moe_route_f16_f32",
        (Dtype::F16, Dtype::F16) => "memwall_moe_route_f16_f16",
        (Dtype::F16, Dtype::BF16) => "memwall_moe_route_f16_bf16",
        (Dtype::BF16, Dtype::F32) => "memwall_moe_route_bf16_f32",
        (Dtype::BF16, Dtype::F16) => "memwall_moe_route_bf16_f16",
        (Dtype::BF16, Dtype::BF16) => "memwall_moe_route_bf16_bf16",
    };
    let combine_kernel: &'static str = match act {
        Dtype::F32 => "memwall_moe_combine_f32",
        Dtype::F16 => "memwall_moe_combine_f16",
        Dtype::BF16 => "memwall_moe_combine_bf16",
    };
    let plan = |kernel, grid: u32, block: u32, args, buffers| LaunchPlan {
        module: "moe",
        kernel,
        grid: Dim3::x(grid),
        block: Dim3::x(block),
        dynamic_smem_bytes: 0,
        args,
        buffers,
    };
    Ok(MoePlans {
        route: plan(
            route_kernel,
            tokens.div_ceil(4),
            128,
            with(10),
            vec![
                read("logits", s.logits, logits.size()),
                read("prev", s.prev, 4),
                read("wg", s.wg, 4),
                read("x", s.x, a),
                read("wc", s.wc, 4),
                write("next_logits", s.t_by_n, 4),
                write("probs", s.t_by_n, 4),
                write("topk_ids", s.t_by_k, 4),
                write("topk_w", s.t_by_k, 4),
                write("alpha", s.alpha, 4),
            ],
        ),
        count: plan(
            "memwall_moe_count",
            chunks,
            256,
            with(5),
            vec![
                read("topk_ids", s.t_by_k, 4),
                read("probs", s.t_by_n, 4),
                write("ffn_counts", s.chunk_ffn, 4),
                write("selected", s.chunk_all, 4),
                write("prob_sums", s.chunk_all, 4),
            ],
        ),
        scan: plan(
            "memwall_moe_scan",
            1,
            256,
            with(8),
            vec![
                read("ffn_counts", s.chunk_ffn, 4),
                read("selected", s.chunk_all, 4),
                read("prob_sums", s.chunk_all, 4),
                write("chunk_offsets", s.chunk_ffn, 4),
                write("expert_offsets", s.expert_offsets, 4),
                write("expert_counts", s.expert_counts, 4),
                write("stats", s.stats, 4),
                write("sorted_tokens", s.sorted, 4),
            ],
        ),
        scatter: plan(
            "memwall_moe_scatter",
            chunks,
            32,
            with(5),
            vec![
                read("topk_ids", s.t_by_k, 4),
                read("chunk_offsets", s.chunk_ffn, 4),
                read("expert_offsets", s.expert_offsets, 4),
                write("sorted_tokens", s.sorted, 4),
                write("slot_rows", s.t_by_k, 4),
            ],
        ),
        combine: plan(
            combine_kernel,
            tokens,
            256,
            with(8),
            vec![
                read("x", s.x, a),
                // Rows come from slot_rows, which scatter bounds by max_rows.
                read("expert_out", s.expert_out, a),
                read("v", s.v, 4),
                read("topk_ids", s.t_by_k, 4),
                read("topk_w", s.t_by_k, 4),
                read("alpha", s.alpha, 4),
                read("slot_rows", s.t_by_k, 4),
                write("out", s.out, a),
            ],
        ),
    })
}

/// Routing and dispatch on the emulator, through the same plans a GPU runs.
#[cfg(feature = "emu")]
pub fn route_and_dispatch_emu<L: Element, A: Element>(
    emu: &crate::emu::Emulator,
    cfg: &MoeConfig,
    inputs: &super::GateInputs<'_, L, A>,
) -> Result<(super::Routing, super::Dispatch)> {
    use crate::emu::HostBind as H;
    inputs.validate(cfg)?;
    let (t, hidden) = (inputs.tokens, inputs.hidden);
    let has_prev = inputs.residual.is_some();
    let p = plans(cfg, t, hidden, L::DTYPE, A::DTYPE, has_prev)?;
    let s = Slots::new(cfg, t, hidden, L::DTYPE, A::DTYPE, has_prev);
    let words = |bytes: u64| vec![0u32; (bytes / 4) as usize];
    let empty = [0f32; 1];
    let (prev, wg) = inputs.residual.map_or((&empty[..], &empty[..]), |r| (r.prev_logits, r.wg));
    let (mut next, mut probs) = (vec![0f32; (s.t_by_n / 4) as usize], vec![0f32; (s.t_by_n / 4) as usize]);
    let (mut ids, mut w, mut alpha) =
        (words(s.t_by_k), vec![0f32; (s.t_by_k / 4) as usize], vec![0f32; (s.alpha / 4) as usize]);
    let wc = if inputs.wc.is_empty() { &empty[..] } else { inputs.wc };
    emu.launch(
        &p.route,
        &mut [
            H::read(inputs.logits),
            H::read(prev),
            H::read(wg),
            H::read(inputs.x),
            H::read(wc),
            H::write(&mut next),
            H::write(&mut probs),
            H::write(&mut ids),
            H::write(&mut w),
            H::write(&mut alpha),
        ],
    )?;
    let (mut ffn_counts, mut selected, mut prob_sums) =
        (words(s.chunk_ffn.max(4)), words(s.chunk_all), vec![0f32; (s.chunk_all / 4) as usize]);
    emu.launch(
        &p.count,
        &mut [
            H::read(&ids),
            H::read(&probs),
            H::write(&mut ffn_counts),
            H::write(&mut selected),
            H::write(&mut prob_sums),
        ],
    )?;
    let (mut chunk_offsets, mut offsets, mut counts) =
        (words(s.chunk_ffn.max(4)), words(s.expert_offsets), words(s.expert_counts.max(4)));
    let mut stats = vec![0f32; (s.stats / 4) as usize];
    let mut sorted = vec![0x5a5a_5a5ai32; (s.sorted / 4) as usize];
    emu.launch(
        &p.scan,
        &mut [
            H::read(&ffn_counts),
            H::read(&selected),
            H::read(&prob_sums),
            H::write(&mut chunk_offsets),
            H::write(&mut offsets),
            H::write(&mut counts),
            H::write(&mut stats),
            H::write(&mut sorted),
        ],
    )?;
    let mut slot_rows = vec![0i32; (s.t_by_k / 4) as usize];
    emu.launch(
        &p.scatter,
        &mut [
            H::read(&ids),
            H::read(&chunk_offsets),
            H::read(&offsets),
            H::write(&mut sorted),
            H::write(&mut slot_rows),
        ],
    )?;
    let n = cfg.layout.experts() as usize;
    let nf = cfg.layout.n_ffn as usize;
    let rows = offsets[nf] as usize;
    sorted.truncate(rows);
    let routing = super::Routing {
        next_logits: next,
        probs,
        ids: ids.iter().map(|&v| v as i32).collect(),
        weights: w,
        alpha,
        stats: super::LoadStats { f: stats[..n].to_vec(), p: stats[n..2 * n].to_vec(), lb: stats[2 * n] },
    };
    let dispatch = super::Dispatch {
        expert_offsets: offsets,
        expert_counts: counts[..nf].to_vec(),
        sorted_tokens: sorted,
        slot_rows,
    };
    Ok((routing, dispatch))
}

/// Combine on the emulator, through the same plan a GPU runs.
#[cfg(feature = "emu")]
pub fn combine_emu<A: Element>(
    emu: &crate::emu::Emulator,
    cfg: &MoeConfig,
    routing: &super::Routing,
    dispatch: &super::Dispatch,
    inputs: &super::CombineInputs<'_, A>,
    out: &mut [A],
) -> Result<()> {
    use crate::emu::HostBind as H;
    let super::CombineInputs { x, expert_out, v, hidden } = *inputs;
    let t = (routing.ids.len() / cfg.top_k as usize) as u32;
    let p = plans(cfg, t, hidden, Dtype::F32, A::DTYPE, false)?;
    // The kernel trusts ids and rows (on a GPU they come from route and
    // scatter); here they come from the caller, so check them.
    let max_rows = cfg.max_rows(t);
    if let Some(&r) = dispatch.slot_rows.iter().find(|&&r| r >= 0 && r as u64 >= max_rows) {
        return Err(Error::invalid("slot_rows", r, format!("rows must be below {max_rows}")));
    }
    if let Some(&e) = routing.ids.iter().find(|&&e| e < 0 || e as u32 >= cfg.layout.experts()) {
        return Err(Error::invalid("ids", e, format!("experts are 0..{}", cfg.layout.experts())));
    }
    super::check_len("slot_rows", dispatch.slot_rows.len(), routing.ids.len())?;
    let empty = [0f32; 1];
    let v = if v.is_empty() { &empty[..] } else { v };
    emu.launch(
        &p.combine,
        &mut [
            H::read(x),
            H::read(expert_out),
            H::read(v),
            H::read(&routing.ids),
            H::read(&routing.weights),
            H::read(&routing.alpha),
            H::read(&dispatch.slot_rows),
            H::write(out),
        ],
    )
}

/// One plan per moe entry, for the signature tests.
pub(crate) fn sample_plans() -> Vec<LaunchPlan> {
    let cfg = MoeConfig::new(super::ExpertLayout::paper(20).expect("paper layout"));
    let mut out = Vec::new();
    for l in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        for a in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let p = plans(&cfg, 8, 64, l, a, true).expect("sample plans");
            out.push(p.route);
            if l == Dtype::F32 {
                out.push(p.combine);
            }
        }
    }
    let p = plans(&cfg, 8, 64, Dtype::F32, Dtype::F32, false).expect("sample plans");
    out.extend([p.count, p.scan, p.scatter]);
    out
}
