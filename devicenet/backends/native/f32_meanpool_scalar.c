/* Global mean pool: scalar; portable C (ARMv6, and any CPU the vector variants do not cover). */
#include "native.h"
#include "vec8_scalar.h"
#define MEANPOOL dn_f32_meanpool_scalar
#include "f32_meanpool.h"
