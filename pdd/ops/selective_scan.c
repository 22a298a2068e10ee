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

/* One route of VMamba's cross scan for one row, adding its outputs to y_row at each pixel. Every input
   is in pixel (row-major) order; the route only decides the visiting order: 0 row-major, 1 column-major,
   2 and 3 the same reversed. So no route is ever copied, transposed or flipped in memory. */
static inline __attribute__((always_inline)) void cross_route(
        const float* u_row, const float* dt_row, const float* A_row, const float* B_route,
        const float* C_route, float* y_row, int64_t height, int64_t width, int route, const int64_t n_state) {
    float h[256], rate[256];
    for (int64_t n = 0; n < n_state; ++n) {
        h[n] = 0.0f;
        rate[n] = A_row[n];
    }
    const int reverse = route >= 2, columns = route % 2;
    const int64_t outer = columns ? width : height, inner = columns ? height : width;
    const int64_t outer_stride = columns ? 1 : width, inner_stride = columns ? width : 1;
    for (int64_t i = 0; i < outer; ++i) {
        const int64_t o = reverse ? outer - 1 - i : i;
        for (int64_t j = 0; j < inner; ++j) {
            const int64_t p = o * outer_stride + (reverse ? inner - 1 - j : j) * inner_stride;
            const float step = dt_row[p];
            y_row[p] += scan_step(h, rate, step, step * u_row[p], B_route + p * n_state, C_route + p * n_state,
                                  n_state);
        }
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

/* Rows [row_begin, row_end) of VMamba's four-route scan, summed per pixel with the D skip of every
   route; u, y: (batch, channels, L); dt: (batch, 4, channels, L); A: (4, channels, N); B, C:
   (batch, 4, L, N); D: (4, channels). All in pixel order, L = height * width. */
void cross_scan_rows(const float* u, const float* dt, const float* A, const float* B, const float* C,
                     const float* D, float* y, int64_t channels, int64_t height, int64_t width, int64_t n_state,
                     int64_t row_begin, int64_t row_end) {
    const int64_t length = height * width;
    for (int64_t row = row_begin; row < row_end; ++row) {
        const int64_t b = row / channels, c = row % channels;
        const float* u_row = u + row * length;
        float* y_row = y + row * length;
        const float skip = D[c] + D[channels + c] + D[2 * channels + c] + D[3 * channels + c];
        for (int64_t t = 0; t < length; ++t)
            y_row[t] = skip * u_row[t];
        for (int route = 0; route < 4; ++route) {
            const float* dt_row = dt + ((b * 4 + route) * channels + c) * length;
            const float* A_row = A + (route * channels + c) * n_state;
            const int64_t route_offset = (b * 4 + route) * length * n_state;
            if (n_state == 16)
                cross_route(u_row, dt_row, A_row, B + route_offset, C + route_offset, y_row, height, width,
                            route, 16);
            else
                cross_route(u_row, dt_row, A_row, B + route_offset, C + route_offset, y_row, height, width,
                            route, n_state);
        }
    }
}
