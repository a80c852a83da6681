/* Eight-bit add, mean pool, quantise and dequantise (q8_pointwise.h): NEON (ARMv7 where the CPU has it, every AArch64). */
#include "q8.h"
#if DN_NEON
#include "q8_neon.h"

/* 16 values of q8_ref.add in int32 lanes */
INLINE void add16(const dn_q8_add_args *a, const uint8_t *x, const uint8_t *z, uint8_t *y)
{
    const uint8x16_t xv = vld1q_u8(x), zv = vld1q_u8(z);
    const int16x8_t za = vdupq_n_s16((int16_t)a->a_zero_point), zb = vdupq_n_s16((int16_t)a->b_zero_point);
    const int32x4_t ma = vdupq_n_s32((int32_t)a->ma), mb = vdupq_n_s32((int32_t)a->mb);
    const int32x4_t rnd = vdupq_n_s32((int32_t)1 << (a->shift - 1)), sh = vdupq_n_s32(-(int32_t)a->shift);
    const int32x4_t zp = vdupq_n_s32((int32_t)a->zero_point);
    const uint8x16_t lo = vdupq_n_u8((uint8_t)a->qmin), hi = vdupq_n_u8((uint8_t)a->qmax);
    int16x8_t dx[2], dz[2];
    dx[0] = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(xv))), za);
    dx[1] = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(xv))), za);
    dz[0] = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(zv))), zb);
    dz[1] = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(zv))), zb);
    int16x4_t out[4];
    for (int q = 0; q < 4; q++) {
        const int16x4_t px = (q & 1) ? vget_high_s16(dx[q / 2]) : vget_low_s16(dx[q / 2]);
        const int16x4_t pz = (q & 1) ? vget_high_s16(dz[q / 2]) : vget_low_s16(dz[q / 2]);
        int32x4_t s = vmlaq_s32(vmlaq_s32(rnd, vmovl_s16(px), ma), vmovl_s16(pz), mb);
        s = vaddq_s32(vshlq_s32(s, sh), zp);  /* arithmetic shift right (a shift by -shift) */
        out[q] = vqmovn_s32(s);
    }
    const uint8x16_t b = vcombine_u8(vqmovun_s16(vcombine_s16(out[0], out[1])),
                                     vqmovun_s16(vcombine_s16(out[2], out[3])));
    vst1q_u8(y, vminq_u8(vmaxq_u8(b, lo), hi));
}

/* the sums of 16 channels over hw pixels, then to float (in VFP code on
 * 32-bit ARM, IEEE on AArch64) */
INLINE void meanpool16(const uint8_t *x, ptrdiff_t hw, ptrdiff_t c, int32_t bias, float scale, float *y)
{
    int32x4_t acc[4];
    for (int q = 0; q < 4; q++)
        acc[q] = vdupq_n_s32(bias);
    for (ptrdiff_t p = 0; p < hw; p++) {
        const uint8x16_t v = vld1q_u8(x + p * c);
        const uint16x8_t l = vmovl_u8(vget_low_u8(v)), h = vmovl_u8(vget_high_u8(v));
        acc[0] = vreinterpretq_s32_u32(vaddw_u16(vreinterpretq_u32_s32(acc[0]), vget_low_u16(l)));
        acc[1] = vreinterpretq_s32_u32(vaddw_u16(vreinterpretq_u32_s32(acc[1]), vget_high_u16(l)));
        acc[2] = vreinterpretq_s32_u32(vaddw_u16(vreinterpretq_u32_s32(acc[2]), vget_low_u16(h)));
        acc[3] = vreinterpretq_s32_u32(vaddw_u16(vreinterpretq_u32_s32(acc[3]), vget_high_u16(h)));
    }
    int32_t s[16];
    for (int q = 0; q < 4; q++)
        vst1q_s32(s + 4 * q, acc[q]);
    for (int j = 0; j < 16; j++)
        y[j] = (float)s[j] * scale;
}

#define ADD16 add16
#define MEANPOOL16 meanpool16
#if defined(__arm__)
#define Q8_NO_FLOAT
#endif
#define Q8(op) dn_q8_##op##_neon
#include "q8_pointwise.h"
#endif
