/* Direct convolution of few input channels: avx2fma, 4 pixels x 16 channels
 * in registers; AVX2 + FMA (x86-64). */
#include "native.h"
#if DN_X86
#pragma GCC target("avx2,fma")
#include "vec8_x86.h"
#define CONV_DIRECT dn_f32_conv_direct_avx2fma
#include "f32_conv_direct.h"
#endif
