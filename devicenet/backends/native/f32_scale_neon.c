/* Channel scale: neon; NEON (ARMv7 where the CPU has it; every AArch64). */
#include "native.h"
#if DN_NEON
#include "vec8_neon.h"
#define SCALE dn_f32_scale_neon
#include "f32_scale.h"
#endif
