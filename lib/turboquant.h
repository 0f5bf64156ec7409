/* turboquant.h - TurboQuant (MSE variant) for KV-cache head vectors, CPU
 * reference. Zandieh, Daliri, Hadian, Mirrokni, arXiv 2504.19874.
 *
 * A head vector x of d floats (d a power of two, 8 <= d <= 1024) is stored
 * as its norm plus one b-bit codebook index per coordinate (b = 2, 3, 4):
 *
 *   1. norm = ||x|| (sum of squares in double, then sqrt, rounded to float).
 *   2. t = D x: s_i = -1 or +1 per coordinate (the sign stream below).
 *   3. t = FWHT(t): the unnormalized fast Walsh-Hadamard transform in
 *      Sylvester order, H[i][j] = (-1)^popcount(i & j); computed in place,
 *      in float, by the butterflies
 *          for (len = 1; len < d; len *= 2)
 *            for (i = 0; i < d; i += 2 * len)
 *              for (j = i; j < i + len; j++)
 *                (t[j], t[j + len]) = (t[j] + t[j + len], t[j] - t[j + len])
 *   4. z_i = t_i / norm (float division). The rotated unit vector is
 *      u = H D x / (sqrt(d) ||x||) and z = sqrt(d) u, so each z_i is close to
 *      N(0, 1) for any x.
 *   5. idx_i = number of decision boundaries strictly below z_i, i.e. the
 *      nearest of the 2^b Lloyd-Max centroids for N(0, 1) (ascending, index 0
 *      the most negative); boundaries are the midpoints of adjacent
 *      centroids, and z exactly on a boundary takes the lower centroid.
 *      Centroids (float constants, symmetric):
 *        b = 2: +-0.4528, +-1.5104
 *        b = 3: +-0.2451, +-0.7560, +-1.3439, +-2.1520
 *        b = 4: +-0.1284, +-0.3881, +-0.6568, +-0.9424,
 *               +-1.2562, +-1.6181, +-2.0691, +-2.7326
 *   A zero vector stores norm 0 (it decodes to zeros whatever the indices).
 *   A vector holding NaN or Inf stores norm = NaN (f16 0x7e00) and indices 0:
 *   it decodes to NaN everywhere, so the problem stays visible.
 *
 * Decoding: c_i = centroid[idx_i]; x'_i = s_i * FWHT(c)_i * (n / d), with n
 * the stored (f16) norm: that is D H (c / sqrt(d)) * n, the inverse rotation
 * of the dequantized unit vector (the normalized WHT H / sqrt(d) is its own
 * inverse, and so is D).
 *
 * Layout of one head vector ("tq<b>", bytes = 2 + d * b / 8):
 *   bytes 0..1  f16 norm (IEEE half, little-endian; norms above 65504 become
 *               Inf, as a Q8_0 scale would)
 *   bytes 2..   the indices, 8 per group of b bytes: group g (indices 8g ..
 *               8g+7) is the little-endian (8b)-bit integer w at bytes
 *               2 + g*b .. 2 + g*b + b - 1, and idx[8g + k] = (w >> (b*k)) &
 *               (2^b - 1). (For b = 4: byte j = idx[2j] | idx[2j+1] << 4.)
 *   d = 128: tq4 66 bytes (4.125 bits/value), tq3 50 (3.125), tq2 34 (2.125).
 *
 * Sign stream (the fixed random rotation): SplitMix64 with seed S. Word k
 * (k = 0, 1, ...) is
 *     z = S + (k + 1) * 0x9E3779B97F4A7C15            (mod 2^64)
 *     z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
 *     z = (z ^ (z >> 27)) * 0x94D049BB133111EB
 *     word_k = z ^ (z >> 31)
 * (the k-th output of the usual SplitMix64 generator started at S), and
 * s_i = -1 if bit (i % 64) of word_(i / 64) is set, else +1. Every layer,
 * head, K and V use the same d signs; QE_TURBOQUANT_SEED is the seed qeval's
 * KV formats record.
 *
 * Attention in the rotated domain: with q' = H D q / sqrt(d)
 * (qe_turboquant_rotate) and k'' = the stored vector decoded without the
 * inverse rotation (qe_turboquant_dequantize_rotated: c * n / sqrt(d)),
 * q' . k'' = q . k_decoded; the output accumulated from rotated V vectors is
 * brought back with qe_turboquant_unrotate (D H y / sqrt(d)).
 *
 * Threading: pure functions, safe from any thread.
 */
#ifndef QE_TURBOQUANT_H
#define QE_TURBOQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define QE_TURBOQUANT_SEED 0x7475726230717561ull /* "turb0qua" */
#define QE_TURBOQUANT_MIN_DIM 8
#define QE_TURBOQUANT_MAX_DIM 1024

/* QE_OK if bits is 2, 3 or 4 and d is a power of two in 8..1024; else
 * QE_EINVAL naming the value and the rule. */
qe_status qe_turboquant_check(int bits, int d);

/* Bytes of one encoded head vector: 2 + d * bits / 8. Caller guarantees
 * qe_turboquant_check(bits, d) == QE_OK. */
size_t qe_turboquant_vec_bytes(int bits, int d);

/* The 2^bits centroids in ascending order (a static table). */
const float *qe_turboquant_centroids(int bits);

/* s[0 .. d-1] = the +-1 signs of the stream above for `seed`. */
void qe_turboquant_signs(uint64_t seed, int d, float *s);

/* Encode x[0 .. d-1] into dst (qe_turboquant_vec_bytes bytes). */
void qe_turboquant_quantize(int bits, const float *x, int d, uint64_t seed, void *dst);

/* Decode into y[0 .. d-1] in the natural basis. */
void qe_turboquant_dequantize(int bits, const void *src, int d, uint64_t seed, float *y);

/* Decode into the rotated basis: y_i = centroid[idx_i] * n / sqrt(d). */
void qe_turboquant_dequantize_rotated(int bits, const void *src, int d, float *y);

/* out = H D x / sqrt(d) (rotate a query); d a power of two <= 1024; out may
 * equal x. */
void qe_turboquant_rotate(const float *x, int d, uint64_t seed, float *out);

/* out = D H y / sqrt(d), the inverse of qe_turboquant_rotate; out may equal y. */
void qe_turboquant_unrotate(const float *y, int d, uint64_t seed, float *out);

#endif
