/* Direct convolution of few input channels: scalar, 2 pixels x 16 channels
 * in registers; portable C (ARMv6, and any CPU the vector variants do not
 * cover). */
#include "native.h"
#include "vec8_scalar.h"
#define CONV_DIRECT dn_f32_conv_direct_scalar
#include "f32_conv_direct.h"
