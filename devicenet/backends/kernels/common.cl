/* Helpers every program shares (the host prepends this file). */

/* (n, oy, ox, c) of element idx of an NHWC tensor with OH x OW x C per image */
inline int4 nhwc_index(int idx, int OH, int OW, int C)
{
    const int p = idx / C;
    return (int4)(p / (OW * OH), (p / OW) % OH, p % OW, idx % C);
}

/* offset of pixel (n, iy, ix), channel c, of an NHWC tensor; -1 when (iy, ix)
 * lies in the padding outside the H x W image */
inline long nhwc_at(int n, int iy, int ix, int c, int H, int W, int C)
{
    if (iy < 0 || iy >= H || ix < 0 || ix >= W)
        return -1;
    return (((long)n * H + iy) * W + ix) * C + c;
}

/* Curve activation `kind` (graph.CURVES: 0 sigmoid, 1 hard sigmoid
 * clamp(alpha * v + beta, 0, 1), 2 hard swish v * hard sigmoid, 3 SiLU
 * v * sigmoid, 4 GELU v * (1 + erf(v / sqrt 2)) / 2) of v. */
inline float curve_of(float v, int kind, float alpha, float beta)
{
    if (kind == 4)
        return 0.5f * v * (1.0f + erf(v * M_SQRT1_2_F));
    const float hard = clamp(alpha * v + beta, 0.0f, 1.0f);
    const float soft = 1.0f / (1.0f + exp(-v));
    return kind == 0 ? soft : kind == 1 ? hard : kind == 2 ? v * hard : v * soft;
}

/* A layer's fused activation: the clamp lo..hi, then curve `kind` (-1: none)
 * with hard sigmoid's usual alpha 1/6 and beta 1/2. */
inline float activate(float v, float lo, float hi, int kind)
{
    v = clamp(v, lo, hi);
    return kind < 0 ? v : curve_of(v, kind, 1.0f / 6.0f, 0.5f);
}
