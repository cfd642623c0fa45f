#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention (flash backend) on the shapes of
`cargo bench --bench attention`: B S = 16k tokens, H D = 2048, bf16, TFLOP/s
counted as 4 B S^2 H D (halved for causal), median of 10 runs; and a paged-KV
decode stand-in (a contiguous KV read with SDPA, q length 1) for bandwidth.
"""
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("attention_torch.py: PyTorch not installed; skipping")
if not torch.cuda.is_available():
    sys.exit("attention_torch.py: no CUDA device; skipping")


def timed(fn, reps=10):
    for _ in range(2):
        fn()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]


print(f"{'hd':>5} {'seq':>6} {'causal':>6} | {'torch TFLOP/s':>13}")
for hd in (64, 128):
    for seq in (512, 1024, 2048, 4096, 8192, 16384):
        for causal in (False, True):
            b, h = 16384 // seq, 2048 // hd
            q = torch.randn(b, h, seq, hd, device="cuda", dtype=torch.bfloat16)
            k, v = torch.randn_like(q), torch.randn_like(q)
            with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
                t = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
            flops = 4 * b * seq * seq * h * hd / (2 if causal else 1)
            print(f"{hd:>5} {seq:>6} {str(causal):>6} | {flops / t / 1e12:>13.1}")

print(f"\n{'batch':>6} {'context':>7} | {'torch GB/s':>10}")
for batch in (1, 8):
    for ctx in (4096, 16384, 65536):
        q = torch.randn(batch, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(batch, 8, ctx, 128, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        t = timed(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
        print(f"{batch:>6} {ctx:>7} | {2 * k.numel() * 2 / t / 1e9:>10.0f}")
