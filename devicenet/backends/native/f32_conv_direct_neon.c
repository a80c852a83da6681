/* Direct convolution of few input channels: neon, 4 pixels (AArch64) or 2
 * (ARMv7) x 16 channels in registers; NEON (ARMv7 where the CPU has it;
 * every AArch64). */
#include "native.h"
#if DN_NEON
#include "vec8_neon.h"
#define CONV_DIRECT dn_f32_conv_direct_neon
#include "f32_conv_direct.h"
#endif
