/* Channel scale: scalar; portable C (ARMv6, and any CPU the vector variants do not cover). */
#include "native.h"
#include "vec8_scalar.h"
#define SCALE dn_f32_scale_scalar
#include "f32_scale.h"
