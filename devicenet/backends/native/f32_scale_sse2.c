/* Channel scale: sse2; SSE2 (x86-64's baseline). */
#include "native.h"
#if DN_X86
#pragma GCC target("sse2")
#include "vec8_x86.h"
#define SCALE dn_f32_scale_sse2
#include "f32_scale.h"
#endif
