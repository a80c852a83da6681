/* Residual add: scalar; portable C (ARMv6, and any CPU the vector variants do not cover). */
#include "native.h"
#include "vec8_scalar.h"
#define ADD dn_f32_add_scalar
#include "f32_add.h"
