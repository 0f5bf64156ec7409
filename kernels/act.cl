/* act.cl - the SwiGLU product of one gate and one up value, shared by
 * ffn.cl (silu_mul, silu_mul_xh) and mma.cl's mma_tile_glu so that every
 * path computes it with the same expression, hence the same bits:
 *   silu_mul1(z, u) = silu(z) * u, silu(z) = z / (1 + e^-z).
 */
inline float silu_mul1(float z, float u) { return z / (1.0f + exp(-z)) * u; }
