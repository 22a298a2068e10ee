/* The CPU kernels of pdd.ops (the selective scan and VMamba's fused four-route cross scan), float32
   forward only. Shipped as package data and compiled on first use by pdd/ops/cpu_kernel.py with the flags
   listed there; it must stay warning-free under gcc -Wall -Wextra -Werror (tests/ops). Layouts and the
   recurrence are documented in pdd/ops/__init__.py; nothing here allocates or calls libm. */

#include <stdint.h>
#include <string.h>

/* exp(x) for float32 without libm, so that gcc vectorises the state loop: exp(x) = 2^k * e^r with
   |r| <= ln2/2 and a degree-7 Taylor polynomial (truncation error below one ulp). */
static inline float exp_f32(float x) {
    const float clamped = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float k = (clamped * 1.44269504f + 12582912.0f) - 12582912.0f;
    const float r = (clamped - k * 0.693145752f) - k * 1.42860677e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits;
    memcpy(&bits, &p, sizeof bits);
    bits += (int32_t)k << 23;
    memcpy(&p, &bits, sizeof p);
    return x < -87.0f ? 0.0f : p;
}

/* softplus(x) = log(1 + e^x) as torch computes it (x itself above 20), without libm so that gcc
   vectorises it: log(1 + e) = k ln2 + log(m) for 1 + e = m 2^k, m in [sqrt(1/2), sqrt(2)), with
   log(m) = 2 atanh(f / (2 + f)) (f = m - 1) to s^9 (error below 1e-8 relative), plus the rounding error of
   1 + e, (e - (u - 1)) / u, which keeps small results (e << 1) accurate as log1p does. */
static inline float softplus_f32(float x) {
    const float e = exp_f32(x), u = 1.0f + e;
    int32_t bits;
    memcpy(&bits, &u, sizeof bits);
    const int32_t high = (bits & 0x007fffff) > 0x3504f3;  /* the mantissa above sqrt(2): halve it */
    const int32_t k = ((bits >> 23) & 0xff) - 127 + high;
    bits = (bits & 0x007fffff) | (high ? 0x3f000000 : 0x3f800000);
    float m = u;
    memcpy(&m, &bits, sizeof m);
    const float f = m - 1.0f, s = f / (2.0f + f), s2 = s * s;
    const float series = s * (2.0f + s2 * (2.0f / 3.0f + s2 * (0.4f + s2 * (2.0f / 7.0f + s2 * (2.0f / 9.0f)))));
    const float log_u = (float)k * 0.693145752f + (series + (float)k * 1.42860677e-06f);
    const float result = log_u + (e - (u - 1.0f)) / u;
    return x > 20.0f ? x : result;
}

/* One time step of one row: update the n_state states in place and return <C_t, h_t>. Inlined with a
   literal n_state for the common N = 16, so that the states stay in one vector register. */
static inline __attribute__((always_inline)) float scan_step(
        float* h, const float* rate, float step, float input, const float* B_t, const float* C_t,
        const int64_t n_state) {
    float acc = 0.0f;
    #pragma omp simd reduction(+ : acc)
    for (int64_t n = 0; n < n_state; ++n) {
        h[n] = exp_f32(step * rate[n]) * h[n] + input * B_t[n];
        acc += h[n] * C_t[n];
    }
    return acc;
}

/* One (batch, channel) row over time. */
static inline __attribute__((always_inline)) void scan_row(
        const float* u_row, const float* dt_row, const float* A_row, const float* B_group,
        const float* C_group, float* y_row, int64_t length, const int64_t n_state) {
    float h[256], rate[256];
    for (int64_t n = 0; n < n_state; ++n) {
        h[n] = 0.0f;
        rate[n] = A_row[n];
    }
    for (int64_t t = 0; t < length; ++t) {
        const float step = dt_row[t];
        y_row[t] = scan_step(h, rate, step, step * u_row[t], B_group + t * n_state, C_group + t * n_state,
                             n_state);
    }
}

/* Rows [row_begin, row_end) of the (batch * channels) rows; u, dt, y: (batch, channels, L);
   A: (channels, N); B, C: (batch, groups, L, N). */
void selective_scan_rows(const float* u, const float* dt, const float* A, const float* B, const float* C,
                         float* y, int64_t channels, int64_t groups, int64_t length, int64_t n_state,
                         int64_t row_begin, int64_t row_end) {
    for (int64_t row = row_begin; row < row_end; ++row) {
        const int64_t b = row / channels, c = row % channels, g = c / (channels / groups);
        const int64_t group_offset = (b * groups + g) * length * n_state;
        if (n_state == 16)
            scan_row(u + row * length, dt + row * length, A + c * 16, B + group_offset, C + group_offset,
                     y + row * length, length, 16);
        else
            scan_row(u + row * length, dt + row * length, A + c * n_state, B + group_offset, C + group_offset,
                     y + row * length, length, n_state);
    }
}

/* VMamba's cross scan is vectorised over channels, not states: 16 neighbouring channels of one pixel are
   contiguous in the (batch, L, channels) layout of the VMamba block, so one route step loads u, dt and adds
   y as whole vectors, while B_t[n] and C_t[n] are scalars shared by those channels. Each channel's
   <C_t, h_t> is then a plain vector multiply-add per state, with no horizontal sum. */
#define LANES 16

/* One route over the grid for `lanes` channels (LANES in the main loop, fewer at the tail), adding each
   step's <C_t, h_t> to y at its pixel. u, dt, y: this block's first channel of pixel 0, pixel stride
   `channels`; the step is dt + dt_bias, through softplus if `softplus`; A_t: (n_state, channels) at the block's first channel; B, C: the route's pixel 0, pixel
   stride `bc_stride`, states contiguous. The route only decides the visiting order: 0 row-major,
   1 column-major, 2 and 3 the same reversed, so nothing is copied, transposed or flipped in memory. */
static inline __attribute__((always_inline)) void cross_route_lanes(
        const float* u, const float* dt, const float* dt_bias, int softplus, const float* A_t, const float* B,
        const float* C, float* y, int64_t channels, int64_t bc_stride, int64_t height, int64_t width, int route,
        const int64_t n_state, const int64_t lanes) {
    float h[256][LANES], rate[256][LANES];
    for (int64_t n = 0; n < n_state; ++n)
        for (int64_t l = 0; l < lanes; ++l) {
            h[n][l] = 0.0f;
            rate[n][l] = A_t[n * channels + l];
        }
    const int reverse = route >= 2, columns = route % 2;
    const int64_t outer = columns ? width : height, inner = columns ? height : width;
    const int64_t outer_stride = columns ? 1 : width, inner_stride = columns ? width : 1;
    for (int64_t i = 0; i < outer; ++i) {
        const int64_t o = reverse ? outer - 1 - i : i;
        for (int64_t j = 0; j < inner; ++j) {
            const int64_t p = o * outer_stride + (reverse ? inner - 1 - j : j) * inner_stride;
            const float* u_p = u + p * channels;
            const float* dt_p = dt + p * channels;
            const float* B_p = B + p * bc_stride;
            const float* C_p = C + p * bc_stride;
            float step[LANES], input[LANES], acc[LANES] = {0.0f};
            #pragma omp simd
            for (int64_t l = 0; l < lanes; ++l) {
                const float biased = dt_p[l] + dt_bias[l];
                step[l] = softplus ? softplus_f32(biased) : biased;
                input[l] = step[l] * u_p[l];
            }
            for (int64_t n = 0; n < n_state; ++n) {
                const float b = B_p[n], c = C_p[n];
                #pragma omp simd
                for (int64_t l = 0; l < lanes; ++l) {
                    h[n][l] = exp_f32(step[l] * rate[n][l]) * h[n][l] + input[l] * b;
                    acc[l] += h[n][l] * c;
                }
            }
            float* y_p = y + p * channels;
            #pragma omp simd
            for (int64_t l = 0; l < lanes; ++l)
                y_p[l] += acc[l];
        }
    }
}

/* Blocks [block_begin, block_end) of the batch * ceil(channels / LANES) (batch item, 16-channel block)
   pairs of VMamba's four-route scan, summed per pixel with the D skips of every route. u, y:
   (batch, L, channels); dt: (4, batch, L, channels), before its bias dt_bias (4, channels) and the
   softplus (if `softplus`); A_t: (4, N, channels); D: (4, channels); B, C:
   element (b, p, route, n) at b * bc_batch + p * bc_pixel + route * bc_route + n. L = height * width in
   pixel (row-major) order. */
void cross_scan_channels_last(const float* u, const float* dt, const float* dt_bias, int64_t softplus,
                              const float* A_t, const float* B, const float* C, const float* D, float* y, int64_t batch, int64_t channels, int64_t height,
                              int64_t width, int64_t n_state, int64_t bc_batch, int64_t bc_pixel, int64_t bc_route,
                              int64_t block_begin, int64_t block_end) {
    const int64_t length = height * width, blocks = (channels + LANES - 1) / LANES;
    for (int64_t block = block_begin; block < block_end; ++block) {
        const int64_t b = block / blocks, c0 = block % blocks * LANES;
        const int64_t lanes = channels - c0 < LANES ? channels - c0 : LANES;
        const float* u_b = u + b * length * channels + c0;
        float* y_b = y + b * length * channels + c0;
        float skip[LANES];
        for (int64_t l = 0; l < lanes; ++l)
            skip[l] = D[c0 + l] + D[channels + c0 + l] + D[2 * channels + c0 + l] + D[3 * channels + c0 + l];
        for (int64_t p = 0; p < length; ++p)
            for (int64_t l = 0; l < lanes; ++l)
                y_b[p * channels + l] = skip[l] * u_b[p * channels + l];
        for (int route = 0; route < 4; ++route) {
            const float* dt_b = dt + (route * batch + b) * length * channels + c0;
            const float* bias_b = dt_bias + route * channels + c0;
            const float* A_b = A_t + route * n_state * channels + c0;
            const float* B_b = B + b * bc_batch + route * bc_route;
            const float* C_b = C + b * bc_batch + route * bc_route;
            if (n_state == 16 && lanes == LANES)
                cross_route_lanes(u_b, dt_b, bias_b, (int)softplus, A_b, B_b, C_b, y_b, channels, bc_pixel, height,
                                  width, route, 16, LANES);
            else
                cross_route_lanes(u_b, dt_b, bias_b, (int)softplus, A_b, B_b, C_b, y_b, channels, bc_pixel, height,
                                  width, route, n_state, lanes);
        }
    }
}
