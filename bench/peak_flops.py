"""This CPU's measured matmul peak, the denominator of MFU (model FLOPs utilisation) in the training benchmarks.

    python bench/peak_flops.py [--threads 2] [--dtype float32|bfloat16] [--size 2048]

MFU = 6 * N * tokens/s / peak: 6 FLOPs per parameter and token (forward 2, backward 4), N the model's
parameters, tokens/s the non-padding training tokens. The peak is measured, not taken from a data sheet:
a plain square GEMM (torch.mm) at the thread count the benchmark trains with, best of --repeats, because
other jobs on a shared machine only ever slow it down.
"""

from __future__ import annotations

import argparse
import time


def gemm_peak_gflops(threads: int, dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of a size x size matmul with `threads` intra-op threads (restored afterwards)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size, dtype=getattr(torch, dtype))
        b = torch.randn(size, size, dtype=getattr(torch, dtype))
        torch.mm(a, b)  # warm-up: first call allocates and picks the kernel
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    peak = gemm_peak_gflops(args.threads, args.dtype, args.size, args.repeats)
    print(f"{args.dtype} {args.size}x{args.size} matmul, {args.threads} threads: {peak:.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
