/* Depthwise convolution: sse2, 2 pixels x 16 channels in registers; SSE2 (x86-64's baseline). */
#include "native.h"
#if DN_X86
#pragma GCC target("sse2")
#include "vec8_x86.h"
#define DWCONV dn_f32_dwconv_sse2
#include "f32_dwconv.h"
#endif
