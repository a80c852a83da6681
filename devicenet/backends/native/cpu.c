/* Which instruction sets this CPU has: found once, when the module loads,
 * and only here.  The kernels' variants name the features they need
 * (registry.c); nothing else asks the CPU. */
#include "native.h"

#if defined(__linux__) && (defined(__arm__) || defined(__aarch64__))
#include <sys/auxv.h>
#endif

static unsigned features;

static const char *const NAMES[DN_CPU_NFEATURES] = {
    "sse2", "avx2", "fma", "avx512f", "neon", "neon_fma", "asimddp", "fphp",
};

void dn_cpu_detect(void)
{
    unsigned f = 0;
#if DN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse2"))
        f |= DN_CPU_SSE2;
    if (__builtin_cpu_supports("avx2"))
        f |= DN_CPU_AVX2;
    if (__builtin_cpu_supports("fma"))
        f |= DN_CPU_FMA;
    if (__builtin_cpu_supports("avx512f"))
        f |= DN_CPU_AVX512F;
#elif defined(__aarch64__)
    /* Advanced SIMD is part of every AArch64 CPU that runs Linux. */
    f |= DN_CPU_NEON | DN_CPU_NEON_FMA;
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP);
#ifdef HWCAP_ASIMDDP
    if (hw & HWCAP_ASIMDDP)
        f |= DN_CPU_ASIMDDP;
#endif
#ifdef HWCAP_FPHP
    if (hw & HWCAP_FPHP)
        f |= DN_CPU_FPHP;
#endif
    (void)hw;
#endif
#elif defined(__arm__) && defined(__linux__)
    /* 32-bit ARM: Raspberry Pi OS's ARMv6 userland runs on CPUs with and
     * without NEON, so the kernel's word decides, not the build. */
    unsigned long hw = getauxval(AT_HWCAP);
#ifndef HWCAP_NEON
#define HWCAP_NEON (1 << 12)
#endif
#ifndef HWCAP_VFPv4
#define HWCAP_VFPv4 (1 << 16)
#endif
    if (hw & HWCAP_NEON)
        f |= DN_CPU_NEON;
    if ((hw & HWCAP_NEON) && (hw & HWCAP_VFPv4))
        f |= DN_CPU_NEON_FMA;
#endif
    features = f;
}

unsigned dn_cpu_features(void)
{
    return features;
}

const char *dn_cpu_feature_name(int bit)
{
    return bit >= 0 && bit < DN_CPU_NFEATURES ? NAMES[bit] : NULL;
}

int dn_cpu_has(const char *feature)
{
    for (int i = 0; i < DN_CPU_NFEATURES; i++)
        if (!strcmp(NAMES[i], feature))
            return (features >> i) & 1;
    return 0;
}
