/* Eight-bit GEMM micro-kernel, 6 x 16 tile, two k per multiply through
 * 16-bit vpmaddwd on a wide panel (int16 weights), AVX2
 * (q8_gemm_avx2.h): exact for any int8 weights. */
#include "q8.h"
#if DN_X86
#define KG 2
#define MR_MAX 6
#define NAME dn_q8_gemm_6x16c2_avx2
#include "q8_gemm_avx2.h"

/* Rows of A widened to uint16, 16 a step (q8.h's widen). */
TARGET void dn_q8_widen_avx2(const uint8_t *a, size_t lda, size_t rows, size_t k, size_t kp, uint16_t *out)
{
    for (size_t i = 0; i < rows; i++, a += lda, out += kp) {
        size_t p = 0;
        for (; p + 16 <= k; p += 16)
            _mm256_storeu_si256((__m256i *)(out + p), _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(a + p))));
        for (; p < k; p++)
            out[p] = a[p];
        for (; p < kp; p++)
            out[p] = 0;
    }
}
#endif
