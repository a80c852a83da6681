/* Ops without weights, over NHWC (or NC) float32 activations.  One
 * work-item per output element unless a kernel says otherwise; lo/hi is a
 * clamp (-INFINITY/INFINITY for none). */

__kernel void add(__global const float *a, __global const float *b, __global float *y, float lo, float hi, int curve)
{
    const int i = get_global_id(0);
    y[i] = activate(a[i] + b[i], lo, hi, curve);
}

/* y = x * scale[c] + shift[c] (per channel, the last axis) */
__kernel void affine(__global const float *x, __global const float *scale, __global const float *shift,
                     __global float *y, int C)
{
    const int i = get_global_id(0);
    y[i] = x[i] * scale[i % C] + shift[i % C];
}

__kernel void clip(__global const float *x, __global float *y, float lo, float hi)
{
    const int i = get_global_id(0);
    y[i] = clamp(x[i], lo, hi);
}

/* Max or average over a window.  Padding never wins a max; an average
 * divides by the whole window (count_include_pad) or by the pixels it
 * really covered. */
__kernel void pool(__global const float *x, __global float *y,
                   int H, int W, int C, int OH, int OW,
                   int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW,
                   int is_max, int count_include_pad)
{
    const int idx = get_global_id(0);
    const int4 o = nhwc_index(idx, OH, OW, C);
    float acc = is_max ? -INFINITY : 0.0f;
    int count = 0;
    for (int i = 0; i < KH; ++i) {
        for (int j = 0; j < KW; ++j) {
            const long at = nhwc_at(o.x, o.y * SH - PT + i * DH, o.z * SW - PL + j * DW, o.w, H, W, C);
            if (at < 0)
                continue;
            acc = is_max ? fmax(acc, x[at]) : acc + x[at];
            ++count;
        }
    }
    if (!is_max)
        acc /= (float)(count_include_pad ? KH * KW : count);
    y[idx] = acc;
}

/* y[n, c] = mean over H*W of x[n, :, :, c]; one work-item per (n, c) */
__kernel void global_avgpool(__global const float *x, __global float *y, int HW, int C)
{
    const int idx = get_global_id(0);
    const int c = idx % C, n = idx / C;
    __global const float *p = x + (long)n * HW * C + c;
    float acc = 0.0f;
    for (int i = 0; i < HW; ++i)
        acc += p[(long)i * C];
    y[idx] = acc / (float)HW;
}

/* Copy a (rows, Cin) tensor into columns [offset, offset + Cin) of a
 * (rows, Cout) one: one call per input of a channel concat. */
__kernel void concat_copy(__global const float *x, __global float *y, int Cin, int Cout, int offset)
{
    const int i = get_global_id(0);
    y[(long)(i / Cin) * Cout + offset + i % Cin] = x[i];
}

/* Softmax over the last axis; one work-item per row (rows are short). */
__kernel void softmax(__global const float *x, __global float *y, int C)
{
    const long r = (long)get_global_id(0) * C;
    float m = -INFINITY;
    for (int c = 0; c < C; ++c)
        m = fmax(m, x[r + c]);
    float s = 0.0f;
    for (int c = 0; c < C; ++c) {
        const float e = exp(x[r + c] - m);
        y[r + c] = e;
        s += e;
    }
    for (int c = 0; c < C; ++c)
        y[r + c] /= s;
}

/* Local response normalisation across channels:
 * y = x / (bias + alpha / size * sum of x^2 over the size channels around c) ^ beta */
__kernel void lrn(__global const float *x, __global float *y, int C, int size,
                  float alpha, float beta, float bias)
{
    const int i = get_global_id(0);
    const int c = i % C, base = i - c;
    const int c0 = max(c - (size - 1) / 2, 0), c1 = min(c + size - 1 - (size - 1) / 2, C - 1);
    float s = 0.0f;
    for (int k = c0; k <= c1; ++k)
        s += x[base + k] * x[base + k];
    y[i] = x[i] / pow(bias + alpha / size * s, beta);
}

/* Constant padding of H and W; one work-item per output element. */
__kernel void pad(__global const float *x, __global float *y, int H, int W, int C, int OH, int OW,
                  int PT, int PL, float value)
{
    const int idx = get_global_id(0);
    const int4 o = nhwc_index(idx, OH, OW, C);
    const long at = nhwc_at(o.x, o.y - PT, o.z - PL, o.w, H, W, C);
    y[idx] = at < 0 ? value : x[at];
}

/* A curve activation (common.cl curve_of) as an op of its own. */
__kernel void curve(__global const float *x, __global float *y, int kind, float alpha, float beta)
{
    const int i = get_global_id(0);
    y[i] = curve_of(x[i], kind, alpha, beta);
}

/* Channels start .. start + OC of an input with C channels per pixel. */
__kernel void slice_channels(__global const float *x, __global float *y, int C, int OC, int start)
{
    const int i = get_global_id(0);
    y[i] = x[(i / OC) * C + start + i % OC];
}

/* Output channel j * G + g is input channel g * (C / G) + j. */
__kernel void channel_shuffle(__global const float *x, __global float *y, int C, int G)
{
    const int i = get_global_id(0), o = i % C;
    y[i] = x[i - o + (o % G) * (C / G) + o / G];
}

/* --- Ops over tensors of any layout (the tokens of a transformer): simple
 * loops, correct before fast. --- */

/* y[i] = x[offset + sum over k of index_k * strides_k], index the position
 * of i in the index space dims (up to 6 axes, unused leading ones 1). */
__kernel void rearrange(__global const float *x, __global float *y, int8 dims, int8 strides, int offset)
{
    const int i = get_global_id(0);
    int r = i;
    long at = offset;
    at += (long)(r % dims.s5) * strides.s5; r /= dims.s5;
    at += (long)(r % dims.s4) * strides.s4; r /= dims.s4;
    at += (long)(r % dims.s3) * strides.s3; r /= dims.s3;
    at += (long)(r % dims.s2) * strides.s2; r /= dims.s2;
    at += (long)(r % dims.s1) * strides.s1; r /= dims.s1;
    at += (long)r * strides.s0;
    y[i] = x[at];
}

/* y = a + b (op 0) or a * b (op 1) with numpy broadcasting over 4 axes:
 * sa/sb are a's and b's element strides per axis of y (0 where that input
 * has size 1).  y may be a. */
__kernel void binary(__global const float *a, __global const float *b, __global float *y,
                     int D1, int D2, int D3, int4 sa, int4 sb, int op)
{
    const int i = get_global_id(0);
    const int4 at = (int4)(i / (D3 * D2 * D1), (i / (D3 * D2)) % D1, (i / D3) % D2, i % D3);
    const int4 pa = at * sa, pb = at * sb;
    const float u = a[pa.x + pa.y + pa.z + pa.w], v = b[pb.x + pb.y + pb.z + pb.w];
    y[i] = op == 0 ? u + v : u * v;
}

/* Layer normalisation over the last axis (C values a row), then
 * y = normalised * scale[c] + shift[c]; one work-item per row. */
__kernel void layernorm(__global const float *x, __global const float *scale, __global const float *shift,
                        __global float *y, int C, float eps)
{
    const long r = (long)get_global_id(0) * C;
    float mean = 0.0f;
    for (int c = 0; c < C; ++c)
        mean += x[r + c];
    mean /= (float)C;
    float var = 0.0f;
    for (int c = 0; c < C; ++c) {
        const float d = x[r + c] - mean;
        var += d * d;
    }
    const float inv = rsqrt(var / (float)C + eps);
    for (int c = 0; c < C; ++c)
        y[r + c] = (x[r + c] - mean) * inv * scale[c] + shift[c];
}

/* Batches of matrix products y (O0, O1, M, N) = a (.., M, K) @ b (.., K, N),
 * or b read as (.., N, K) with tb; bs holds the batch strides of a (x, y)
 * and b (z, w), 0 on a broadcast axis. */
__kernel void matmul(__global const float *a, __global const float *b, __global float *y,
                     int O1, int M, int N, int K, int4 bs, int tb)
{
    const int i = get_global_id(0);
    const int n = i % N, m = (i / N) % M, o = i / (N * M);
    __global const float *pa = a + (long)(o / O1) * bs.x + (long)(o % O1) * bs.y + (long)m * K;
    __global const float *pb = b + (long)(o / O1) * bs.z + (long)(o % O1) * bs.w;
    float acc = 0.0f;
    if (tb) {
        pb += (long)n * K;
        for (int k = 0; k < K; ++k)
            acc += pa[k] * pb[k];
    } else {
        for (int k = 0; k < K; ++k)
            acc += pa[k] * pb[(long)k * N + n];
    }
    y[i] = acc;
}
