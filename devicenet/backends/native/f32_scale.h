/* y (images, hw, c) = x times s (images, c), channel by channel: the
 * squeeze-and-excitation gate, which scales each channel of a feature map
 * by a weight computed from the whole map.  Over the 8-float vectors of
 * the including variant's vec8_<isa>.h; the includer defines SCALE.  y
 * may be x. */
void SCALE(const dn_scale_args *a, ptrdiff_t p0, ptrdiff_t p1)
{
    const ptrdiff_t c = a->c;
    for (ptrdiff_t p = p0; p < p1; p++) {  /* pixels of the whole batch */
        const float *x = a->x + p * c, *s = a->s + p / a->hw * c;
        float *y = a->y + p * c;
        ptrdiff_t k = 0;
        for (; k + 8 <= c; k += 8)
            v8_store(y + k, v8_mul(v8_load(x + k), v8_load(s + k)));
        for (; k < c; k++)
            y[k] = x[k] * s[k];
    }
}
