/* Dense layer on int8 weights: sse2; SSE2 (x86-64's baseline). */
#include "native.h"
#if DN_X86
#pragma GCC target("sse2")
#include "vec8_x86.h"
#define QTYPE signed char
#define LOAD_Q v8_load_i8
#define DENSE_Q dn_f32_dense_q8_sse2
#include "f32_dense_q.h"
#endif
