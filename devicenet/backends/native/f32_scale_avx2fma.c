/* Channel scale: avx2fma; AVX2 + FMA (x86-64). */
#include "native.h"
#if DN_X86
#pragma GCC target("avx2,fma")
#include "vec8_x86.h"
#define SCALE dn_f32_scale_avx2fma
#include "f32_scale.h"
#endif
