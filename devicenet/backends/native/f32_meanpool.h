/* y (images, c) = the mean over hw pixels of x (images, hw, c), over the
 * 8-float vectors of the including variant's vec8_<isa>.h; the includer
 * defines MEANPOOL. */
void MEANPOOL(const dn_meanpool_args *a, ptrdiff_t i0, ptrdiff_t i1)
{
    const ptrdiff_t hw = a->hw, c = a->c;
    const float scale = 1.0f / (float)hw;
    for (ptrdiff_t n = i0; n < i1; n++) {
        const float *restrict xn = a->x + n * hw * c;
        float *restrict yn = a->y + n * c;
        ptrdiff_t k = 0;
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
