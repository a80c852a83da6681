/* Eight-bit depthwise convolution (q8_dwconv.h): portable C (ARMv6, and any CPU the vector variants do not cover). */
#include "q8.h"
#define DWCONV dn_q8_dwconv_scalar
#include "q8_dwconv.h"
