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
