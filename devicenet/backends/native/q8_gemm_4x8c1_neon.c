/* Eight-bit GEMM micro-kernel, 4 x 8 tile, NEON on 32-bit ARM
 * (q8_gemm_neon.h): 8 accumulators, four widened weight vectors.  The
 * file enables NEON for itself (neither Debian's armhf target nor
 * Raspberry Pi OS's has it); the registry runs it only where HWCAP_NEON
 * says the CPU has it. */
#include "q8.h"
#if DN_NEON && defined(__arm__)
#if !defined(__ARM_NEON) && __ARM_ARCH < 7
#pragma GCC target("arch=armv7-a,fpu=neon")  /* NEON came with ARMv7 */
#elif !defined(__ARM_NEON)
#pragma GCC target("fpu=neon")
#endif

#define DN_NEON_MR 4
#define DN_NEON_NAME dn_q8_gemm_4x8c1_neon
#include "q8_gemm_neon.h"
#endif
