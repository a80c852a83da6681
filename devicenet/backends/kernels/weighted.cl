/* Ops with weights: convolution (implicit-im2col tiled GEMM), depthwise
 * convolution and dense layers.
 *
 * The host prepends the weight encoding:
 *   WTYPE        storage type of a weight (char, short, half, float)
 *   LOADW(p, i)  weight i of p as a float, decoded in a register
 * Integer weights are symmetric with one scale per output channel, so the
 * scale factors out of the sum: accumulate q * x, multiply by the scale once.
 * Float encodings get scales of 1.
 *
 * Activations are NHWC float32; lo/hi is the fused activation's clamp
 * (-INFINITY/INFINITY for none) and curve its curve (-1 for none), applied
 * to each output while it is still in a register (common.cl activate).
 */

/* out[m, g*cog + co] = clamp(scale * sum_k A[m, k] * W[g*cog + co, k] + bias)
 * where m runs over (n, oy, ox) and k over the weights' (i, j, ci) order; the
 * A tile is gathered straight from the input (im2col without the matrix).
 *
 * A work-group of 8x8 computes a TM x TN tile of the output, each work-item
 * RM x RN of it in registers, over TK-deep slices of k staged in local
 * memory: each value loaded from local memory feeds four multiply-adds.
 * Global size: (ceil(cog/TN)*8, ceil(M/TM)*8, groups). */
#define TM 32
#define TN 32
#define TK 16
#define RM 4
#define RN 4
#define LOADS (TM * TK / 64)

__kernel __attribute__((reqd_work_group_size(8, 8, 1)))
void conv_gemm(__global const float *x, __global const WTYPE *w, __global const float *scale,
               __global const float *bias, __global float *y,
               int H, int W, int C, int OH, int OW, int CO,
               int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW, float PV,
               int cig, int cog, int M, float lo, float hi, int curve)
{
    __local float As[TK][TM + 1];
    __local float Bs[TK][TN + 1];
    const int a = get_local_id(0), b = get_local_id(1), tid = b * 8 + a;
    const int g = get_global_id(2);
    const int m0 = get_group_id(1) * TM, n0 = get_group_id(0) * TN;
    const int K = KH * KW * cig;
    /* Unchecked reads only where every tap lies in the input: bottom or
     * right pads reach past it as surely as top or left ones. */
    const int pointwise = KH == 1 && KW == 1 && PT == 0 && PL == 0 && (OH - 1) * SH < H && (OW - 1) * SW < W;
    const int cbase = g * cig;

    /* Every load of this work-item reads k = k0 + kk of rows (and weight
     * rows) tid / TK + r * 64 / TK: neighbours read neighbouring channels. */
    const int kk = tid % TK, row0 = tid / TK;
    int pn[LOADS], py[LOADS], px[LOADS];
    for (int r = 0; r < LOADS; ++r) {
        const int m = m0 + row0 + r * (64 / TK);
        const int rem = m % (OH * OW);
        pn[r] = m < M ? m / (OH * OW) : -1;
        py[r] = (rem / OW) * SH - PT;
        px[r] = (rem % OW) * SW - PL;
    }
    __global const WTYPE *wg = w + (long)g * cog * K;

    float acc[RM][RN];
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j)
            acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += TK) {
        const int k = k0 + kk;
        const int ci = k % cig, t = k / cig;
        const int dy = (t / KW) * DH, dx = (t % KW) * DW;
        for (int r = 0; r < LOADS; ++r) {
            const int rr = row0 + r * (64 / TK);
            float av = 0.0f;
            if (pn[r] >= 0 && k < K) {
                if (pointwise) {
                    av = x[(((long)pn[r] * H + py[r]) * W + px[r]) * C + cbase + k];
                } else {
                    const long at = nhwc_at(pn[r], py[r] + dy, px[r] + dx, cbase + ci, H, W, C);
                    av = at < 0 ? PV : x[at];
                }
            }
            As[kk][rr] = av;
            const int co = n0 + rr;
            Bs[kk][rr] = (co < cog && k < K) ? LOADW(wg, (long)co * K + k) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int q = 0; q < TK; ++q) {
            float ar[RM], br[RN];
            for (int i = 0; i < RM; ++i)
                ar[i] = As[q][b + 8 * i];
            for (int j = 0; j < RN; ++j)
                br[j] = Bs[q][a + 8 * j];
            for (int i = 0; i < RM; ++i)
                for (int j = 0; j < RN; ++j)
                    acc[i][j] += ar[i] * br[j];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int j = 0; j < RN; ++j) {
        const int cg = n0 + a + 8 * j;
        if (cg >= cog)
            continue;
        const int co = g * cog + cg;
        const float s = scale[co], bb = bias[co];
        for (int i = 0; i < RM; ++i) {
            const int m = m0 + b + 8 * i;
            if (m < M)
                y[(long)m * CO + co] = activate(acc[i][j] * s + bb, lo, hi, curve);
        }
    }
}

/* One channel per input channel: weights (C, KH, KW, 1).  One work-item per
 * output element, channels fastest so neighbours read neighbouring floats. */
__kernel void depthwise(__global const float *x, __global const WTYPE *w, __global const float *scale,
                        __global const float *bias, __global float *y,
                        int H, int W, int C, int OH, int OW,
                        int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW, float PV,
                        float lo, float hi, int curve)
{
    const int idx = get_global_id(0);
    const int4 o = nhwc_index(idx, OH, OW, C);
    __global const WTYPE *wc = w + o.w * KH * KW;
    float acc = 0.0f;
    for (int i = 0; i < KH; ++i) {
        for (int j = 0; j < KW; ++j) {
            const long at = nhwc_at(o.x, o.y * SH - PT + i * DH, o.z * SW - PL + j * DW, o.w, H, W, C);
            acc += (at >= 0 ? x[at] : PV) * LOADW(wc, i * KW + j);
        }
    }
    y[idx] = activate(acc * scale[o.w] + bias[o.w], lo, hi, curve);
}

/* y[n, o] = clamp(scale[o] * dot(x[n], W[o]) + bias[o]).  One work-group of
 * DENSE_WG per output: the work-items split the row and sum in local memory. */
#define DENSE_WG 64
__kernel __attribute__((reqd_work_group_size(DENSE_WG, 1, 1)))
void dense(__global const float *x, __global const WTYPE *w, __global const float *scale,
           __global const float *bias, __global float *y, int K, int O, float lo, float hi, int curve)
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
        y[(long)n * O + o] = activate(part[0] * scale[o] + bias[o], lo, hi, curve);
}
