/* Eight-bit GEMM micro-kernel, 8 x 8 tile, NEON on 64-bit ARM
 * (q8_gemm_neon.h): 16 accumulators and four widened weight vectors of the
 * 32 vector registers. */
#include "q8.h"
#if DN_NEON && defined(__aarch64__)
#define DN_NEON_MR 8
#define DN_NEON_NAME dn_q8_gemm_8x8c1_neon
#include "q8_gemm_neon.h"
#endif
