/* y (images, c) = the mean over hw pixels of x (images, hw, c), over the
 * 8-float vectors of the including variant's vec8_<isa>.h; the includer
 * defines MEANPOOL.
 *
 * Channels go in blocks of 32 (four vectors, four independent sums) down
 * all the pixels: each pixel's block is 128 contiguous bytes, so the walk
 * reads whole cache lines in order, where one vector per pixel would touch
 * every line of the map once per vector. */
void MEANPOOL(const dn_meanpool_args *a, ptrdiff_t i0, ptrdiff_t i1)
{
    const ptrdiff_t hw = a->hw, c = a->c;
    const float scale = 1.0f / (float)hw;
    for (ptrdiff_t n = i0; n < i1; n++) {
        const float *restrict xn = a->x + n * hw * c;
        float *restrict yn = a->y + n * c;
        ptrdiff_t k = 0;
        for (; k + 32 <= c; k += 32) {
            v8 s0 = v8_zero(), s1 = v8_zero(), s2 = v8_zero(), s3 = v8_zero();
            for (ptrdiff_t p = 0; p < hw; p++) {
                const float *xp = xn + p * c + k;
                s0 = v8_add(s0, v8_load(xp));
                s1 = v8_add(s1, v8_load(xp + 8));
                s2 = v8_add(s2, v8_load(xp + 16));
                s3 = v8_add(s3, v8_load(xp + 24));
            }
            v8_store(yn + k, v8_mul(s0, v8_dup(scale)));
            v8_store(yn + k + 8, v8_mul(s1, v8_dup(scale)));
            v8_store(yn + k + 16, v8_mul(s2, v8_dup(scale)));
            v8_store(yn + k + 24, v8_mul(s3, v8_dup(scale)));
        }
        for (; k + 8 <= c; k += 8) {
            v8 acc = v8_zero();
            for (ptrdiff_t p = 0; p < hw; p++)
                acc = v8_add(acc, v8_load(xn + p * c + k));
            v8_store(yn + k, v8_mul(acc, v8_dup(scale)));
        }
        for (; k < c; k++) {
            float acc = 0.0f;
            for (ptrdiff_t p = 0; p < hw; p++)
                acc += xn[p * c + k];
            yn[k] = acc * scale;
        }
    }
}
