/* Bias and activation in place: scalar; portable C (ARMv6, and any CPU the
 * vector variants do not cover). */
#include "native.h"
#include "vec8_scalar.h"
#define BIAS_ACT dn_f32_bias_act_scalar
#include "f32_bias_act.h"
