/* Bias and activation in place: neon; NEON (ARMv7 where the CPU has it; every AArch64). */
#include "native.h"
#if DN_NEON
#include "vec8_neon.h"
#define BIAS_ACT dn_f32_bias_act_neon
#include "f32_bias_act.h"
#endif
