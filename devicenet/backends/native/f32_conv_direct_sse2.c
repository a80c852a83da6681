/* Direct convolution of few input channels: sse2, 2 pixels x 16 channels in
 * registers; SSE2 (x86-64's baseline). */
#include "native.h"
#if DN_X86
#pragma GCC target("sse2")
#include "vec8_x86.h"
#define CONV_DIRECT dn_f32_conv_direct_sse2
#include "f32_conv_direct.h"
#endif
