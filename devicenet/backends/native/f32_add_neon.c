/* Residual add: neon; NEON (ARMv7 where the CPU has it; every AArch64). */
#include "native.h"
#if DN_NEON
#include "vec8_neon.h"
#define ADD dn_f32_add_neon
#include "f32_add.h"
#endif
