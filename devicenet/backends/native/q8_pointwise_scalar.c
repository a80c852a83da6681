/* Eight-bit add, mean pool, quantise and dequantise (q8_pointwise.h): portable C (ARMv6, and any CPU the vector variants do not cover). */
#include "q8.h"
#define Q8(op) dn_q8_##op##_scalar
#include "q8_pointwise.h"
