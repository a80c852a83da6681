/* What the NEON eight-bit kernels share: requantisation of 8 int32 sums
 * to bytes.  vqrdmulh is (acc * m + 2**30) >> 31 and vrshl by -e the
 * rounding shift right: exactly q8_ref.requantize.  On 32-bit ARM a file
 * that includes this enables NEON for itself (as vec8_neon.h does), so a
 * build with the distribution's default flags holds the NEON variants. */
#ifndef DEVICENET_Q8_NEON_H
#define DEVICENET_Q8_NEON_H

#if defined(__arm__) && !defined(__ARM_NEON) && __ARM_ARCH < 7
#pragma GCC target("arch=armv7-a,fpu=neon")  /* NEON came with ARMv7 */
#elif defined(__arm__) && !defined(__ARM_NEON)
#pragma GCC target("fpu=neon")
#endif
#include <arm_neon.h>

/* neg_e: the shifts negated */
__attribute__((always_inline))
static inline uint8x8_t requantize8(int32x4_t a0, int32x4_t a1, int32x4_t m0, int32x4_t m1, int32x4_t neg_e0,
                                    int32x4_t neg_e1, int16x8_t zp, uint8x8_t qmin, uint8x8_t qmax)
{
    const int32x4_t p0 = vrshlq_s32(vqrdmulhq_s32(a0, m0), neg_e0);
    const int32x4_t p1 = vrshlq_s32(vqrdmulhq_s32(a1, m1), neg_e1);
    /* saturating narrowing: beyond int16 the clamp to [0, 255] decides the same */
    const int16x8_t s = vqaddq_s16(vcombine_s16(vqmovn_s32(p0), vqmovn_s32(p1)), zp);
    return vmin_u8(vmax_u8(vqmovun_s16(s), qmin), qmax);
}

#endif
