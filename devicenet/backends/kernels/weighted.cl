/* Ops with weights: convolution (implicit-im2col tiled GEMM), depthwise
 * convolution and dense layers.
 *
 * The host prepends the weight encoding:
 *   WTYPE        storage type of a weight (char, short, half, float)
 *   LOADW(p, i)  weight i of p as a float, decoded in a register
 *   TS           GEMM tile edge (work-group is TS x TS)
 * Integer weights are symmetric with one scale per output channel, so the
 * scale factors out of the sum: accumulate q * x, multiply by the scale once.
 * Float encodings get scales of 1.
 *
 * Activations are NHWC float32; lo/hi is the fused activation's clamp
 * (-INFINITY/INFINITY for none).
 */

/* out[m, g*cog + co] = clamp(scale * sum_k A[m, k] * W[g*cog + co, k] + bias)
 * where m runs over (n, oy, ox) and k over the weights' (i, j, ci) order; the
 * A tile is gathered straight from the input (im2col without the matrix).
 * Global size: (ceil(cog/TS)*TS, ceil(M/TS)*TS, groups). */
__kernel __attribute__((reqd_work_group_size(TS, TS, 1)))
void conv_gemm(__global const float *x, __global const WTYPE *w, __global const float *scale,
               __global const float *bias, __global float *y,
               int H, int W, int C, int OH, int OW, int CO,
               int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW,
               int cig, int cog, int M, float lo, float hi)
{
    __local float As[TS][TS + 1];
    __local float Bs[TS][TS + 1];
    const int a = get_local_id(0), b = get_local_id(1);
    const int g = get_global_id(2);
    const int K = KH * KW * cig;
    const int pointwise = KH == 1 && KW == 1 && PT == 0 && PL == 0;

    /* the input row this thread gathers for the A tile */
    const int ar = get_group_id(1) * TS + b;
    const int an = ar / (OH * OW), arem = ar % (OH * OW);
    const int oy = arem / OW, ox = arem % OW;
    const int iy0 = oy * SH - PT, ix0 = ox * SW - PL;
    /* the weight row this thread loads for the B tile */
    const int bco = get_group_id(0) * TS + b;
    __global const WTYPE *wrow = w + (long)(g * cog + bco) * K;
    const int cbase = g * cig;

    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TS) {
        const int k = k0 + a;
        float av = 0.0f;
        if (ar < M && k < K) {
            if (pointwise) {
                av = x[(((long)an * H + iy0) * W + ix0) * C + cbase + k];
            } else {
                const int ci = k % cig, t = k / cig;
                const int iy = iy0 + (t / KW) * DH, ix = ix0 + (t % KW) * DW;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                    av = x[(((long)an * H + iy) * W + ix) * C + cbase + ci];
            }
        }
        As[b][a] = av;
        Bs[b][a] = (bco < cog && k < K) ? LOADW(wrow, k) : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int t = 0; t < TS; ++t)
            acc += As[b][t] * Bs[a][t];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const int m = get_group_id(1) * TS + b;
    const int co = g * cog + get_group_id(0) * TS + a;
    if (m < M && get_group_id(0) * TS + a < cog)
        y[(long)m * CO + co] = clamp(acc * scale[co] + bias[co], lo, hi);
}

/* One channel per input channel: weights (C, KH, KW, 1).  One work-item per
 * output element, channels fastest so neighbours read neighbouring floats. */
__kernel void depthwise(__global const float *x, __global const WTYPE *w, __global const float *scale,
                        __global const float *bias, __global float *y,
                        int H, int W, int C, int OH, int OW,
                        int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW,
                        float lo, float hi)
{
    const int idx = get_global_id(0);
    const int4 o = nhwc_index(idx, OH, OW, C);
    __global const WTYPE *wc = w + o.w * KH * KW;
    float acc = 0.0f;
    for (int i = 0; i < KH; ++i) {
        for (int j = 0; j < KW; ++j) {
            const long at = nhwc_at(o.x, o.y * SH - PT + i * DH, o.z * SW - PL + j * DW, o.w, H, W, C);
            if (at >= 0)
                acc += x[at] * LOADW(wc, i * KW + j);
        }
    }
    y[idx] = clamp(acc * scale[o.w] + bias[o.w], lo, hi);
}

/* y[n, o] = clamp(scale[o] * dot(x[n], W[o]) + bias[o]).  One work-group of
 * DENSE_WG per output: the work-items split the row and sum in local memory. */
#define DENSE_WG 64
__kernel __attribute__((reqd_work_group_size(DENSE_WG, 1, 1)))
void dense(__global const float *x, __global const WTYPE *w, __global const float *scale,
           __global const float *bias, __global float *y, int K, int O, float lo, float hi)
{
    __local float part[DENSE_WG];
    const int l = get_local_id(0), o = get_group_id(0), n = get_global_id(1);
    __global const WTYPE *row = w + (long)o * K;
    __global const float *xr = x + (long)n * K;
    float acc = 0.0f;
    for (int k = l; k < K; k += DENSE_WG)
        acc += xr[k] * LOADW(row, k);
    part[l] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = DENSE_WG / 2; s > 0; s >>= 1) {
        if (l < s)
            part[l] += part[l + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0)
        y[(long)n * O + o] = clamp(part[0] * scale[o] + bias[o], lo, hi);
}
