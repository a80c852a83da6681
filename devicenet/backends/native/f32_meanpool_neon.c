/* Global mean pool: neon; NEON (ARMv7 where the CPU has it; every AArch64). */
#include "native.h"
#if DN_NEON
#include "vec8_neon.h"
#define MEANPOOL dn_f32_meanpool_neon
#include "f32_meanpool.h"
#endif
