/* Depthwise convolution: scalar, 2 pixels x 16 channels in registers;
 * portable C (ARMv6, and any CPU the vector variants do not cover). */
#include "native.h"
#include "vec8_scalar.h"
#define DWCONV dn_f32_dwconv_scalar
#include "f32_dwconv.h"
