/* Dense layer on int8 weights: neon; NEON (ARMv7 where the CPU has it; every AArch64). */
#include "native.h"
#if DN_NEON
#include "vec8_neon.h"
#define QTYPE signed char
#define LOAD_Q v8_load_i8
#define DENSE_Q dn_f32_dense_q8_neon
#include "f32_dense_q.h"
#endif
