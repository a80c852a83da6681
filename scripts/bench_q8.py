"""Throughput of the eight-bit kernels beside the float32 ones, on the
layers of EfficientNet-Lite0 (224x224, batch 1).

For each 1x1 convolution shape (m output pixels, k input channels, n
output channels) it times op q8_gemm (uint8 outputs, requantised) and op
f32_gemm on the same thread count, interleaved, the best of several runs
each, and prints GMAC/s (m * k * n multiply-adds per second, 1e9).  With
``--lite0`` it times every 1x1 and depthwise layer of the network the
same way (q8_dwconv against depthwise) and sums them: the kernels' share
of a whole inference on each path.

    PYTHONPATH=. python scripts/bench_q8.py [--threads 1] [--repeat 20] [--lite0] [--wmax 64|127] [--json]
"""

import argparse
import json
import math
import time

import numpy as np

from devicenet.backends import q8_ref
from devicenet.backends.cpu_gemm import Packed
from devicenet.backends.cpu_kernels import NATIVE
from devicenet.backends.cpu_q8 import DepthwiseQ8, PackedQ8, variant

#: (m, k, n) of Lite0's 1x1 convolutions, one per stage
SHAPES = [(112 * 112, 32, 16), (112 * 112, 16, 96), (56 * 56, 96, 24), (56 * 56, 24, 144),
          (28 * 28, 40, 240), (28 * 28, 240, 40), (14 * 14, 80, 480), (14 * 14, 480, 112),
          (7 * 7, 192, 1152), (7 * 7, 1152, 320), (7 * 7, 320, 1280)]


#: Lite0's blocks: (expand ratio, kernel, stride, input channels, output
#: channels, repeats), from a 112x112x32 stem to the 320-channel last block
LITE0_BLOCKS = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


def lite0_layers():
    """("gemm", m, k, n) and ("dw", h, c, kernel, stride) of every 1x1 and
    depthwise layer, in order (the head's 320 -> 1280 last)."""
    layers, h = [], 112
    for expand, kernel, stride, cin, cout, repeats in LITE0_BLOCKS:
        for r in range(repeats):
            s, c = (stride if r == 0 else 1), (cin if r == 0 else cout)
            mid = c * expand
            if expand != 1:
                layers.append(("gemm", h * h, c, mid))
            layers.append(("dw", h, mid, kernel, s))
            h = (h - 1) // s + 1
            layers.append(("gemm", h * h, mid, cout))
    layers.append(("gemm", h * h, 320, 1280))
    return layers


def best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench(m, k, n, threads, repeat, rng, wmax=64):
    a8 = rng.integers(0, 256, (m, k)).astype(np.uint8)
    wt = rng.integers(-wmax, wmax + 1, (n, k)).astype(np.int8)
    q = PackedQ8(wt, q8_ref.fold_bias(None, wt, 128), rscale=q8_ref.requant_scale(np.full(n, 1e-3)))
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


def bench_dw(h, c, kernel, stride, threads, repeat, rng):
    """q8_dwconv against the float32 depthwise op on one layer: seconds each."""
    x = rng.integers(0, 256, (1, h, h, c)).astype(np.uint8)
    w = rng.integers(-64, 65, (c, kernel, kernel)).astype(np.int8)
    dw = DepthwiseQ8(w, q8_ref.fold_bias(None, w, 128), q8_ref.requant_scale(np.full(c, 1e-3)))
    p = kernel // 2
    oh = (h + 2 * p - kernel) // stride + 1
    y = np.empty((oh, oh, c), np.uint8)
    q8_args = dw.call(x[0], y, (stride, stride), (p, p, p, p), 128, 128)
    f_args = {key: q8_args[key] for key in ("h", "w", "c", "row0", "rows", "oh", "ow", "kh", "kw", "sh", "sw",
                                           "pad_top", "pad_left", "r0", "r1")}
    f_args.update(x=x[0].astype(np.float32), weight=np.ascontiguousarray(w.transpose(1, 2, 0), np.float32),
                  bias=np.zeros(c, np.float32), out=np.empty((oh, oh, c), np.float32), lo=0.0, hi=6.0)
    times = {"q8": float("inf"), "f32": float("inf")}
    for _ in range(3):
        times["q8"] = min(times["q8"], best_time(lambda: NATIVE.q8_dwconv(**q8_args, threads=threads), repeat))
        times["f32"] = min(times["f32"], best_time(lambda: NATIVE.depthwise(**f_args, threads=threads), repeat))
    return times


def lite0(threads, repeat, rng, wmax=64):
    """Summed seconds of Lite0's 1x1 and depthwise layers on each path."""
    total = {("gemm", "q8"): 0.0, ("gemm", "f32"): 0.0, ("dw", "q8"): 0.0, ("dw", "f32"): 0.0}
    for kind, *shape in lite0_layers():
        if kind == "gemm":
            r = bench(*shape, threads, repeat, rng, wmax)
            t = {name: math.prod(shape) / r[f"{name}_gmacs"] / 1e9 for name in ("q8", "f32")}
        else:
            t = bench_dw(*shape, threads, repeat, rng)
        for name in ("q8", "f32"):
            total[kind, name] += t[name]
    return {f"{kind}_{name}_ms": v * 1e3 for (kind, name), v in total.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--lite0", action="store_true", help="every 1x1 and depthwise layer of Lite0, summed")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--wmax", type=int, default=64, choices=(64, 127),
                        help="weights in [-wmax, wmax]: 64 runs the fastest x86 kernel (vpmaddubsw), 127 an exact one")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.lite0:
        t = lite0(args.threads, args.repeat, rng, args.wmax)
        if args.json:
            print(json.dumps({"threads": args.threads, **t}, indent=1))
            return
        print(f"Lite0, {args.threads} thread(s), ms: 1x1 q8 {t['gemm_q8_ms']:.2f} f32 {t['gemm_f32_ms']:.2f} "
              f"({t['gemm_f32_ms'] / t['gemm_q8_ms']:.2f}x); depthwise q8 {t['dw_q8_ms']:.2f} "
              f"f32 {t['dw_f32_ms']:.2f} ({t['dw_f32_ms'] / t['dw_q8_ms']:.2f}x); both "
              f"{(t['gemm_f32_ms'] + t['dw_f32_ms']) / (t['gemm_q8_ms'] + t['dw_q8_ms']):.2f}x")
        return
    rows = [bench(m, k, n, args.threads, args.repeat, rng, args.wmax) for m, k, n in SHAPES]
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
