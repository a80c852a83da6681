/* Float32 GEMM micro-kernel, 4 x 8 tile, NEON on 32-bit ARM (gemm.h).
 *
 * 8 accumulators, four weight vectors (two steps of k) and a pair of A
 * values per row: 14 of the 16 q registers.  vmla (multiply, then add:
 * rounded as the scalar code rounds) runs on every NEON core.  Neither
 * Debian's armhf target (ARMv7, VFPv3-D16) nor Raspberry Pi OS's (ARMv6)
 * has NEON, so this file enables it for itself; the registry runs it only
 * where HWCAP_NEON says the CPU has it. */
#include "gemm.h"
#if DN_NEON && defined(__arm__)
#if !defined(__ARM_NEON) && __ARM_ARCH < 7
#pragma GCC target("arch=armv7-a,fpu=neon")  /* NEON came with ARMv7 */
#elif !defined(__ARM_NEON)
#pragma GCC target("fpu=neon")
#endif

#define DN_NEON_MR 4
#define DN_NEON_MLA_LANE vmlaq_lane_f32
#define DN_NEON_NAME dn_f32_gemm_4x8_neon
#include "f32_gemm_neon.h"
#endif
