/* xh.cl - the order of the f16 pairs in a prefill matmul input (e->xh):
 * mma.cl's mma_xh and ffn.cl's silu_mul_xh write it, mma.cl's mma_tile
 * reads it. Row r holds ldp pairs, pair i = elements (2i, 2i + 1); within
 * each group of 8 pairs (16 elements, one k16 step of the tensor cores) the
 * even pairs come first, then the odd ones:
 *
 *   group slot:  0  1  2  3  4  5  6  7
 *   pair:        0  2  4  6  1  3  5  7
 *
 * Why: mma_tile's k16 step gives lane t the elements 4t, 4t + 1 in A
 * register 0 / 1 and 4t + 2, 4t + 3 in register 2 / 3 (see mma.cl), and it
 * loads A with ldmatrix, which hands lane t the t-th pair of a 16-byte row
 * segment: in this order the first 16 bytes of a group hold every lane's
 * registers 0 / 1 and the next 16 bytes registers 2 / 3. */
inline int xh_pos(int i) { return (i & ~7) | ((i & 1) << 2) | ((i >> 1) & 3); }
