/* y = a + b clipped to [lo, hi] (a residual connection), over the 8-float
 * vectors of the including variant's vec8_<isa>.h; the includer defines
 * ADD.  y may be a or b: each vector is read before it is written. */
void ADD(const dn_add_args *args, ptrdiff_t i0, ptrdiff_t i1)
{
    const float *a = args->a, *b = args->b;
    float *y = args->y;
    const float lo = args->lo, hi = args->hi;
    ptrdiff_t i = i0;
    for (; i + 8 <= i1; i += 8)
        v8_store_clamped(y + i, v8_add(v8_load(a + i), v8_load(b + i)), lo, hi);
    for (; i < i1; i++)
        y[i] = clamp(a[i] + b[i], lo, hi);
}
