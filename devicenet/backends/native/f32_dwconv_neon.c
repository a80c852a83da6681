/* Depthwise convolution: neon, 4 pixels (AArch64) or 2 (ARMv7) x 16
 * channels in registers; ARMv7 where the CPU has NEON, every AArch64. */
#include "native.h"
#if DN_NEON
#include "vec8_neon.h"
#define DWCONV dn_f32_dwconv_neon
#include "f32_dwconv.h"
#endif
