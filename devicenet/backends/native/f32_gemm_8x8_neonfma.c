/* Float32 GEMM micro-kernel, 8 x 8 tile, NEON with FMA on 64-bit ARM
 * (gemm.h).
 *
 * 16 accumulators, four weight vectors (two steps of k) and a pair of A
 * values per row: 28 of the 32 vector registers.  Every AArch64 CPU has
 * NEON (Advanced SIMD) and fused multiply-add. */
#include "gemm.h"
#if DN_NEON && defined(__aarch64__)
#define DN_NEON_MR 8
#define DN_NEON_MLA_LANE vfmaq_lane_f32
#define DN_NEON_NAME dn_f32_gemm_8x8_neonfma
#include "f32_gemm_neon.h"
#endif
