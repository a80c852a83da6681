/* Eight-bit GEMM micro-kernel, 4 x 16 tile, two k per step through 16-bit
 * vpmaddwd, AVX2 (q8_gemm_avx2.h): exact for any int8 weights. */
#include "q8.h"
#if DN_X86
#define KG 2
#define MR_MAX 4
#define NAME dn_q8_gemm_4x16c2_avx2
#include "q8_gemm_avx2.h"
#endif
