/* A dense layer on its stored integers, written once over the 8-float
 * vectors of the including variant's vec8_<isa>.h.  The includer defines
 * DENSE_Q (the variant's name), QTYPE (signed char or short) and LOAD_Q
 * (v8_load_i8 or v8_load_i16).
 *
 * A dense layer at batch 1 is a matrix-vector product: every weight is
 * read once, so its time is the time to stream the weights from memory.
 * Read as stored (int8: a quarter of float32's bytes) and widened in
 * registers, they stream four times faster, and no float32 copy of them is
 * ever made.  y[r, o] = scale[o] * (q[o, :] . x[r, :]) + bias[o]. */
void DENSE_Q(const dn_dense_q_args *a, ptrdiff_t o0, ptrdiff_t o1)
{
    const QTYPE *restrict q = a->q;
    const float *restrict x = a->x;
    const ptrdiff_t k = a->k;
    for (ptrdiff_t o = o0; o < o1; o++) {
        const QTYPE *qr = q + o * k;
        for (ptrdiff_t r = 0; r < a->m; r++) {  /* the weight row stays in cache */
            const float *xr = x + r * k;
            v8 s0 = v8_zero(), s1 = v8_zero();
            ptrdiff_t i = 0;
            for (; i + 16 <= k; i += 16) {
                s0 = v8_fma(s0, LOAD_Q(qr + i), v8_load(xr + i));
                s1 = v8_fma(s1, LOAD_Q(qr + i + 8), v8_load(xr + i + 8));
            }
            float acc = v8_sum(v8_add(s0, s1));
            for (; i < k; i++)
                acc += (float)qr[i] * xr[i];
            a->y[r * a->n + o] = clamp(acc * a->scales[o] + (a->bias ? a->bias[o] : 0.0f), a->lo, a->hi);
        }
    }
}
