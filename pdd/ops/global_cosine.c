/* The elementwise passes of the losses' global cosine (pdd/ops/fused_loss.py), float32, rows of a
   contiguous (rows, cols) matrix. Each pass does, per element, exactly the float operations that
   PyTorch's autograd of F.cosine_similarity does in the same order, so results are bit-identical; the
   reductions between the passes stay torch.sum's. That is why pdd/ops/cpu_kernel.py compiles this file
   with -ffp-contract=off: a fused multiply-add would round once where torch rounds twice. It must stay
   warning-free under gcc -Wall -Wextra -Werror (tests/ops). Every function works on the elements
   [begin, end) of the flattened matrix, so that the caller can split any range over threads. A row is
   one sample: the elementwise passes also take a sample's elements in any order (say channels-last),
   as long as all their arrays share it; only the arrays the caller reduces must be in the row's order. */

#include <stddef.h>
#include <stdint.h>

/* The columns [*first, *last) of `row` that the elements [begin, end) cover (the loops run over the rows
   from begin / cols while row * cols < end). */
static inline void row_segment(int64_t cols, int64_t begin, int64_t end, int64_t row, int64_t* first,
                               int64_t* last) {
    *first = row * cols > begin ? 0 : begin - row * cols;
    *last = (row + 1) * cols < end ? cols : end - row * cols;
}

/* The forward's product: p = (x1 / n1) * (x2 / n2), n the clamped norms of the rows. */
void global_cosine_product(const float* x1, const float* x2, const float* n1, const float* n2, float* p,
                           int64_t cols, int64_t begin, int64_t end) {
    for (int64_t row = begin / cols; row * cols < end; ++row) {
        int64_t first, last;
        row_segment(cols, begin, end, row, &first, &last);
        const float d1 = n1[row], d2 = n2[row];
        const float* a = x1 + row * cols;
        const float* b = x2 + row * cols;
        float* out = p + row * cols;
        for (int64_t i = first; i < last; ++i) out[i] = (a[i] / d1) * (b[i] / d2);
    }
}

/* The backward's terms of the clamped norms (summed over each row by the caller):
   t1 = -(g * b) * (a / n1) and t2 = -(g * a) * (b / n2), with a = x1 / n1, b = x2 / n2 and g the
   gradient of the row's cosine. t1 or t2 may be NULL when that input needs no gradient. One loop writes
   both, so that x1 and x2 are read once (gcc unswitches it on the NULL tests). */
void global_cosine_norm_terms(const float* x1, const float* x2, const float* n1, const float* n2,
                              const float* g, float* t1, float* t2, int64_t cols, int64_t begin, int64_t end) {
    for (int64_t row = begin / cols; row * cols < end; ++row) {
        int64_t first, last;
        row_segment(cols, begin, end, row, &first, &last);
        const float d1 = n1[row], d2 = n2[row], grad = g[row];
        const float* u = x1 + row * cols;
        const float* v = x2 + row * cols;
        float* out1 = t1 == NULL ? NULL : t1 + row * cols;
        float* out2 = t2 == NULL ? NULL : t2 + row * cols;
        for (int64_t i = first; i < last; ++i) {
            const float a = u[i] / d1, b = v[i] / d2;
            if (out1 != NULL) out1[i] = -(grad * b) * (a / d1);
            if (out2 != NULL) out2[i] = -(grad * a) * (b / d2);
        }
    }
}

/* The input gradients: dx1 = (g * b) / n1 + s1 * (x1 / r1), and dx2 alike, with r the raw norms (the
   second term 0 where r is 0, as torch's norm backward masks it) and s the row sums of the norm terms.
   dx1 may be t1's buffer and dx2 t2's (each element is read from x and written once); either may be
   NULL. One loop, as in global_cosine_norm_terms. */
void global_cosine_input_grads(const float* x1, const float* x2, const float* n1, const float* n2,
                               const float* r1, const float* r2, const float* g, const float* s1,
                               const float* s2, float* dx1, float* dx2, int64_t cols, int64_t begin,
                               int64_t end) {
    for (int64_t row = begin / cols; row * cols < end; ++row) {
        int64_t first, last;
        row_segment(cols, begin, end, row, &first, &last);
        const float d1 = n1[row], d2 = n2[row], grad = g[row];
        const float raw1 = dx1 == NULL ? 0.0f : r1[row], sum1 = dx1 == NULL ? 0.0f : s1[row];
        const float raw2 = dx2 == NULL ? 0.0f : r2[row], sum2 = dx2 == NULL ? 0.0f : s2[row];
        const float* u = x1 + row * cols;
        const float* v = x2 + row * cols;
        float* out1 = dx1 == NULL ? NULL : dx1 + row * cols;
        float* out2 = dx2 == NULL ? NULL : dx2 + row * cols;
        for (int64_t i = first; i < last; ++i) {
            if (out1 != NULL) {
                const float b = v[i] / d2;
                const float scaled = raw1 == 0.0f ? 0.0f : u[i] / raw1;
                out1[i] = (grad * b) / d1 + sum1 * scaled;
            }
            if (out2 != NULL) {
                const float a = u[i] / d1;
                const float scaled = raw2 == 0.0f ? 0.0f : v[i] / raw2;
                out2[i] = (grad * a) / d2 + sum2 * scaled;
            }
        }
    }
}

/* The rows themselves, from channels-last maps: dst[s][c][p] = src[s][p][c] for the `pixels` (H*W)
   positions and `channels` of each sample, the copy that flatten() makes of a channels-last map, in
   TILE x TILE blocks that stay in the L1 cache. The work units [begin, end) are one sample's blocks of
   TILE pixels. */
#define TILE 32
void channels_last_to_rows(const float* src, float* dst, int64_t channels, int64_t pixels, int64_t begin,
                           int64_t end) {
    const int64_t blocks = (pixels + TILE - 1) / TILE;
    for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t sample = unit / blocks, p0 = (unit % blocks) * TILE;
        const int64_t p1 = p0 + TILE < pixels ? p0 + TILE : pixels;
        const float* in = src + sample * channels * pixels;
        float* out = dst + sample * channels * pixels;
        for (int64_t c0 = 0; c0 < channels; c0 += TILE) {
            const int64_t c1 = c0 + TILE < channels ? c0 + TILE : channels;
            for (int64_t c = c0; c < c1; ++c)
                for (int64_t p = p0; p < p1; ++p) out[c * pixels + p] = in[p * channels + c];
        }
    }
}
