/* Eight-bit add, mean pool, quantise and dequantise (q8_pointwise.h): SSE2 (x86-64's baseline). */
#include "q8.h"
#if DN_X86
#pragma GCC target("sse2")
#define Q8(op) dn_q8_##op##_sse2
#include "q8_pointwise.h"
#endif
