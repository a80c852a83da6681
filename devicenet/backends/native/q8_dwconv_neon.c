/* Eight-bit depthwise convolution (q8_dwconv.h), NEON (ARMv7 where the CPU
 * has it, every AArch64): per pair of taps and 16 channels, vld2 takes the
 * pair's weights apart and vmlal_s16 adds each tap's widened products into
 * int32; requantised in float32 (q8_neon.h). */
#include "q8.h"
#if DN_NEON
#include "q8_neon.h"

INLINE int16x8_t widen(uint8x8_t v)
{
    return vreinterpretq_s16_u16(vmovl_u8(v));
}

#define MLAL4(acc, x, w) acc = vmlal_s16(acc, x, w)

INLINE void block16(const dn_q8_dwconv_args *a, const uint8_t *const *x, ptrdiff_t pairs, ptrdiff_t k,
                    ptrdiff_t off, uint8_t *y)
{
    const int16_t *w = a->w + 2 * k;
    const ptrdiff_t c2 = 2 * a->g.c;
    int32x4_t acc[4];
    for (int q = 0; q < 4; q++)
        acc[q] = vld1q_s32(a->bias + k + 4 * q);
    for (ptrdiff_t p = 0; p < pairs; p++, w += c2) {
        const uint8x16_t x0 = vld1q_u8(x[2 * p] + off), x1 = vld1q_u8(x[2 * p + 1] + off);
        const int16x8x2_t wa = vld2q_s16(w), wb = vld2q_s16(w + 16);  /* channels 0-7, 8-15: tap 0, tap 1 */
        const int16x8_t x0a = widen(vget_low_u8(x0)), x0b = widen(vget_high_u8(x0));
        const int16x8_t x1a = widen(vget_low_u8(x1)), x1b = widen(vget_high_u8(x1));
        MLAL4(acc[0], vget_low_s16(x0a), vget_low_s16(wa.val[0]));
        MLAL4(acc[1], vget_high_s16(x0a), vget_high_s16(wa.val[0]));
        MLAL4(acc[2], vget_low_s16(x0b), vget_low_s16(wb.val[0]));
        MLAL4(acc[3], vget_high_s16(x0b), vget_high_s16(wb.val[0]));
        MLAL4(acc[0], vget_low_s16(x1a), vget_low_s16(wa.val[1]));
        MLAL4(acc[1], vget_high_s16(x1a), vget_high_s16(wa.val[1]));
        MLAL4(acc[2], vget_low_s16(x1b), vget_low_s16(wb.val[1]));
        MLAL4(acc[3], vget_high_s16(x1b), vget_high_s16(wb.val[1]));
    }
    const q8_stage st = q8_stage_of((int32_t)a->zero_point, (int32_t)a->qmin, (int32_t)a->qmax);
    for (int h = 0; h < 2; h++) {
        const float *f = a->rscale + k + 8 * h;
        vst1_u8(y + 8 * h, requantize8(acc[2 * h], acc[2 * h + 1], vld1q_f32(f), vld1q_f32(f + 4), &st));
    }
}

#define BLOCK16 block16
#define DWCONV dn_q8_dwconv_neon
#include "q8_dwconv.h"
#endif
