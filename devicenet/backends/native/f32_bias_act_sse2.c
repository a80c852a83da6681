/* Bias and activation in place: sse2; SSE2 (x86-64's baseline). */
#include "native.h"
#if DN_X86
#pragma GCC target("sse2")
#include "vec8_x86.h"
#define BIAS_ACT dn_f32_bias_act_sse2
#include "f32_bias_act.h"
#endif
