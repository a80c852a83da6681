/* Dense layer on int8 weights: avx2fma; AVX2 + FMA (x86-64). */
#include "native.h"
#if DN_X86
#pragma GCC target("avx2,fma")
#include "vec8_x86.h"
#define QTYPE signed char
#define LOAD_Q v8_load_i8
#define DENSE_Q dn_f32_dense_q8_avx2fma
#include "f32_dense_q.h"
#endif
