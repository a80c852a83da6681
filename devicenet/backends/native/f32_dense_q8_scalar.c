/* Dense layer on int8 weights: scalar; portable C (ARMv6, and any CPU the
 * vector variants do not cover). */
#include "native.h"
#include "vec8_scalar.h"
#define QTYPE signed char
#define LOAD_Q v8_load_i8
#define DENSE_Q dn_f32_dense_q8_scalar
#include "f32_dense_q.h"
