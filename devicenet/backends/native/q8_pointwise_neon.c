/* Eight-bit add, mean pool, quantise and dequantise (q8_pointwise.h): NEON (ARMv7 where the CPU has it, every AArch64). */
#include "q8.h"
#if DN_NEON
#include "q8_neon.h"
#define Q8(op) dn_q8_##op##_neon
#include "q8_pointwise.h"
#endif
