#!/usr/bin/env python3
"""The MoE++ reference code's routing path in PyTorch, timed on the GPU, for
comparison with `cargo bench --bench moe` (same shapes: N = 20 experts, 16
FFN + 2 constant + copy + zero, top-2, D = 2048, bf16 activations).

Times, per T: gating (router softmax/top-k with gating residual, zero-expert
gates to 0, renormalization, constant-expert alpha), dispatch (argsort by
expert, counts) and combine (index_add of weighted rows plus copy/constant
terms), with CUDA events, median of 20 runs after warm-up.
"""
import sys

try:
    import torch
except ImportError:
    sys.exit("moe_torch.py: PyTorch not installed; skipping")
if not torch.cuda.is_available():
    sys.exit("moe_torch.py: no CUDA device; skipping")

N, N_FFN, N_CONST, K, D = 20, 16, 2, 2, 2048
dev = "cuda"


def layer(logits, prev, wg, x, wc, v, expert_out):
    g = logits.float() + prev @ wg.t()  # gating residual, raw logits passed on
    p = torch.softmax(g, dim=-1)
    w, ids = torch.topk(p, K, dim=-1)
    w = torch.where(ids == N - 1, torch.zeros_like(w), w)  # zero expert
    w = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    # constant experts' alpha for every token (the reference computes all)
    alpha = torch.softmax(torch.einsum("td,cjd->tcj", x.float(), wc), dim=-1)
    # dispatch FFN slots
    flat = ids.flatten()
    ffn = flat < N_FFN
    order = torch.argsort(torch.where(ffn, flat, N), stable=True)
    counts = torch.bincount(flat[ffn], minlength=N_FFN)
    # combine
    out = torch.zeros(x.shape, dtype=torch.float32, device=dev)
    rows = torch.arange(flat.numel(), device=dev)
    tok = rows // K
    wf = w.flatten()
    sel = order[: int(ffn.sum())]
    out.index_add_(0, tok[sel], wf[sel, None] * expert_out[: sel.numel()].float())
    copy = flat == N_FFN + N_CONST
    out.index_add_(0, tok[copy], wf[copy, None] * x[tok[copy]].float())
    for c in range(N_CONST):
        m = flat == N_FFN + c
        a = alpha[tok[m], c]
        out.index_add_(0, tok[m], wf[m, None] * (a[:, :1] * x[tok[m]].float() + a[:, 1:] * v[c]))
    return g, out.to(x.dtype), counts


print(f"{'T':>6} | {'torch layer':>12}")
for t in [1, 16, 256, 1024, 4096, 16384]:
    gen = torch.Generator(device=dev).manual_seed(0)
    logits = torch.randn(t, N, device=dev, generator=gen).bfloat16()
    prev = torch.randn(t, N, device=dev, generator=gen)
    wg = torch.randn(N, N, device=dev, generator=gen) * 0.1
    x = torch.randn(t, D, device=dev, generator=gen).bfloat16()
    wc = torch.randn(N_CONST, 2, D, device=dev, generator=gen) * 0.02
    v = torch.randn(N_CONST, D, device=dev, generator=gen)
    eo = torch.full((t * K, D), 0.5, device=dev).bfloat16()
    for _ in range(3):
        layer(logits, prev, wg, x, wc, v, eo)
    times = []
    for _ in range(20):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        layer(logits, prev, wg, x, wc, v, eo)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) * 1e3)
    times.sort()
    print(f"{t:>6} | {times[len(times) // 2]:>10.1f}us")
