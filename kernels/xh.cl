/* xh.cl - the order of the f16 pairs in a prefill matmul input (e->xh):
 * mma.cl's mma_xh and ffn.cl's silu_mul_xh write it, mma.cl's mma_tile
 * reads it. Row r holds ldp pairs (a multiple of 16), pair i = elements
 * (2i, 2i + 1).
 *
 * Why an order: mma_tile loads A with ldmatrix.x4, which hands lane t the
 * t-th pair of each 16-byte segment, so a k16 step's first 16 bytes of a
 * row are every lane's A registers 0 / 1 (slots 2t, 2t + 1) and the next 16
 * its registers 2 / 3 (slots 2t + 8, 2t + 9). Which elements a lane's slots
 * stand for is the weights' choice: what one local load of their format
 * gives a lane (see mma_tile). So the order depends on the format of the
 * weights the input is multiplied with (enum xh_order in
 * lib/engine_internal.h holds the same numbers):
 *
 *   XH_NAT 0  f32 / f16 weights, whose B fragments come by ldmatrix in
 *             element order too: slot s = element s; no reordering.
 *   XH_K4  1  Q4_0: lane t's slots are elements 4t .. 4t + 3 (four low or
 *             four high nibbles of one 4-byte load); within each 8 pairs
 *             the even pairs, then the odd ones:
 *               group slot:  0  1  2  3  4  5  6  7
 *               pair:        0  2  4  6  1  3  5  7
 *   XH_K8  2  Q8_0: one 8-byte load gives lane t quants 8t .. 8t + 7 of a
 *             32-quant block, 8t + 4s .. for step s of the slice: within
 *             each 16 pairs (one block) slot 8s + 4e + t holds pair
 *             4t + 2s + e.
 */
#define XH_NAT 0
#define XH_K4 1
#define XH_K8 2

/* a and b as one f16 pair (a in the low half), each rounded as
 * vstore_half_rte rounds, in a register: a pair's two 2-byte stores had
 * run at 0.3-1 TB/s on the H200 where one 4-byte store streams (wh.cl's
 * copies, session 20; rmsnorm_xh) */
inline uint xh_pair(float a, float b)
{
    uint u;
    vstore_half2_rte((float2)(a, b), 0, (__private half *)&u);
    return u;
}

inline int xh_pos(int i, int xo)
{
    if (xo == XH_K4)
        return (i & ~7) | ((i & 1) << 2) | ((i >> 1) & 3);
    if (xo == XH_K8)
        return (i & ~15) | (((i >> 1) & 1) << 3) | ((i & 1) << 2) | ((i >> 2) & 3);
    return i;
}
