/* Ops without weights, over NHWC (or NC) float32 activations.  One
 * work-item per output element unless a kernel says otherwise; lo/hi is a
 * clamp (-INFINITY/INFINITY for none). */

__kernel void add(__global const float *a, __global const float *b, __global float *y, float lo, float hi)
{
    const int i = get_global_id(0);
    y[i] = clamp(a[i] + b[i], lo, hi);
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

/* Curve activations (graph.CURVES), standalone or after a layer over its
 * output in place (y may be x): kind 0 sigmoid, 1 hard sigmoid
 * clamp(alpha * x + beta, 0, 1), 2 hard swish x * hard sigmoid, 3 SiLU
 * x * sigmoid, 4 GELU x * (1 + erf(x / sqrt 2)) / 2. */
__kernel void curve(__global const float *x, __global float *y, int kind, float alpha, float beta)
{
    const int i = get_global_id(0);
    const float v = x[i];
    if (kind == 4) {
        y[i] = 0.5f * v * (1.0f + erf(v * M_SQRT1_2_F));
        return;
    }
    const float hard = clamp(alpha * v + beta, 0.0f, 1.0f);
    const float soft = 1.0f / (1.0f + exp(-v));
    y[i] = kind == 0 ? soft : kind == 1 ? hard : kind == 2 ? v * hard : v * soft;
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
