/* Ops over tensors of any layout and rank 2 to 4 (the tokens of a
 * transformer).  One work-item per output element unless a kernel says
 * otherwise; simple loops, correct before fast. */

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
