"""GEMM throughput of the eight-bit kernels beside the float32 ones, on the
1x1 convolutions of EfficientNet-Lite0 (224x224, batch 1).

For each shape (m output pixels, k input channels, n output channels) it
times op q8_gemm (uint8 outputs, requantised) and op f32_gemm on the same
thread count, interleaved, the best of several runs each, and prints
GMAC/s (m * k * n multiply-adds per second, 1e9).

    PYTHONPATH=. python scripts/bench_q8.py [--threads 1] [--repeat 20] [--json]
"""

import argparse
import json
import time

import numpy as np

from devicenet.backends import q8_ref
from devicenet.backends.cpu_gemm import Packed
from devicenet.backends.cpu_kernels import NATIVE
from devicenet.backends.cpu_q8 import PackedQ8, variant

#: (m, k, n) of Lite0's 1x1 convolutions, one per stage
SHAPES = [(112 * 112, 32, 16), (112 * 112, 16, 96), (56 * 56, 96, 24), (56 * 56, 24, 144),
          (28 * 28, 40, 240), (28 * 28, 240, 40), (14 * 14, 80, 480), (14 * 14, 480, 112),
          (7 * 7, 192, 1152), (7 * 7, 1152, 320), (7 * 7, 320, 1280)]


def best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench(m, k, n, threads, repeat, rng):
    a8 = rng.integers(0, 256, (m, k)).astype(np.uint8)
    wt = rng.integers(-64, 65, (n, k)).astype(np.int8)
    mm, e = q8_ref.multiplier(np.full(n, 1e-3))
    q = PackedQ8(wt, q8_ref.fold_bias(None, wt, 128), m=mm, e=e)
    y8 = np.empty((m, n), np.uint8)
    q8_args = q.call(a8, y8, zero_point=128)
    af = rng.normal(size=(m, k)).astype(np.float32)
    f = Packed(wt=wt.astype(np.float32), bias=np.zeros(n, np.float32))
    yf = np.empty((m, n), np.float32)
    f_args = f.call(af, yf, "relu6")
    times = {"q8": float("inf"), "f32": float("inf")}
    for _ in range(3):  # interleaved, so that a busy moment hits both
        times["q8"] = min(times["q8"], best_time(lambda: NATIVE.q8_gemm(**q8_args, threads=threads), repeat))
        times["f32"] = min(times["f32"], best_time(lambda: NATIVE.f32_gemm(**f_args, threads=threads), repeat))
    return {"m": m, "k": k, "n": n, "q8_kernel": q.kernel,
            **{f"{name}_gmacs": m * k * n / t / 1e9 for name, t in times.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [bench(m, k, n, args.threads, args.repeat, rng) for m, k, n in SHAPES]
    if args.json:
        print(json.dumps({"threads": args.threads, "f32_kernel": variant("f32_gemm"), "rows": rows}, indent=1))
        return
    print(f"threads {args.threads}; f32_gemm: {variant('f32_gemm')}")
    print(f"{'m':>6} {'k':>5} {'n':>5}  {'q8 GMAC/s':>9} {'f32 GMAC/s':>10} {'ratio':>5}  q8 kernel")
    for r in rows:
        print(f"{r['m']:>6} {r['k']:>5} {r['n']:>5}  {r['q8_gmacs']:9.1f} {r['f32_gmacs']:10.1f} "
              f"{r['q8_gmacs'] / r['f32_gmacs']:5.2f}  {r['q8_kernel']}")
    total = {name: sum(r["m"] * r["k"] * r["n"] / r[f"{name}_gmacs"] / 1e9 for r in rows) for name in ("q8", "f32")}
    print(f"all shapes: q8 {total['q8'] * 1e3:.2f} ms, f32 {total['f32'] * 1e3:.2f} ms, "
          f"{total['f32'] / total['q8']:.2f}x")


if __name__ == "__main__":
    main()
