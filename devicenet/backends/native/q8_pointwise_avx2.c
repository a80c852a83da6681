/* Eight-bit add, mean pool, quantise and dequantise (q8_pointwise.h): AVX2 (x86-64). */
#include "q8.h"
#if DN_X86
#pragma GCC target("avx2")
#define Q8(op) dn_q8_##op##_avx2
#include "q8_pointwise.h"
#endif
