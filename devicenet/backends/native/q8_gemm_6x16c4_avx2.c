/* Eight-bit GEMM micro-kernel, 6 x 16 tile, four k per step through
 * vpmaddubsw, AVX2 (q8_gemm_avx2.h): for weights whose adjacent pairs
 * cannot saturate int16 (|w[2j]| + |w[2j+1]| <= 128), as the converter
 * stores them. */
#include "q8.h"
#if DN_X86
#define KG 4
#define MR_MAX 6
#define NAME dn_q8_gemm_6x16c4_avx2
#include "q8_gemm_avx2.h"
#endif
