/* tqquad.cl - TurboQuant on a head vector held by a quad of lanes (needs
 * ptx.cl and kvfmt.cl before it; NVIDIA builds only, where ptx.cl is).
 *
 * Both of mma.sync's fragment layouts and wgmma's accumulators put a row's
 * outputs 8 i + 2 t4 + e (t4 = lane % 4) in lane t4's register 2 i + e, so
 * the four lanes of a quad hold a whole head vector of QE_HD: lane t4's
 * v[n] is element d = 8 (n / 2) + 2 t4 + n % 2 (n < QE_HD / 4). attn_mma
 * rotates its queries and outputs that way (tq_fwht_quad) and mma.cl's
 * MT_KVTQ epilogue encodes K and V into their caches (tq_encode_quad).
 * Defined where QE_HD is a power of two, 16 .. 128 (QE_HD / 4 values a
 * lane; TurboQuant needs the power of two): TQ_QUAD says so.
 */
#if !(QE_HD & (QE_HD - 1)) && QE_HD >= 16 && QE_HD <= 128
#define TQ_QUAD 1

/* Element d of lane t4's n (see the top). */
#define TQ_QD(n, t4) (8 * ((n) / 2) + 2 * (t4) + (n) % 2)

/* tq_sign_at of lane t4's n: d / 64 = n / 16, so the word is a constant
 * where n is (an unrolled loop's) */
inline float tq_sign_quad(int n, int t4)
{
    return tq_sign_of(tq_word((ulong)(n / 16)), TQ_QD(n, t4));
}

/* The Walsh-Hadamard butterflies of the head vector in v. Stage len pairs
 * d with d + len and makes (a + b, a - b), stages in tq_fwht's order (len
 * 1, 2, 4, ...): bit 0 of d is bit 0 of n, bits 1 and 2 are t4's (the
 * other lane by shfl.xor), bits 3 .. are n's bits 1 ..; so each value is
 * the same float as tq_fwht's. Every lane of the warp calls it. */
inline void tq_fwht_quad(float *v, int t4)
{
#pragma unroll
    for (int len = 1; len < QE_HD; len *= 2) {
        if (len == 2 || len == 4) {
            const int m = len / 2; /* the lane bit */
#pragma unroll
            for (int n = 0; n < QE_HD / 4; n++) {
                const float b = ptx_shfl_xor(v[n], m);
                v[n] = (t4 & m) ? b - v[n] : v[n] + b;
            }
        } else {
            const int m = len == 1 ? 1 : len / 4; /* the register bit */
#pragma unroll
            for (int n = 0; n < QE_HD / 4; n++)
                if (!(n & m)) {
                    const float lo = v[n], hi = v[n | m];
                    v[n] = lo + hi;
                    v[n | m] = lo - hi;
                }
        }
    }
}

/* The NV head vectors in v (destroyed; vector h's values at v + h QE_HD /
 * 4, in tq_fwht_quad's order) TurboQuant-encoded with 2^bits centroids
 * (nv <= TQ_NV and bits compile-time constants) into the KV_TQ_VEC bytes
 * at out + h KV_TQ_VEC, for h < n_store (the same in all four lanes), as
 * kv.cl's kv_store encodes each from an f32 row. Per vector:
 * the norm a sum in element order, passed around the quad (elements 2 p
 * and 2 p + 1 are lane p % 4's, which adds their squares and hands the sum
 * on by shfl.idx); the signs; the butterflies; each element's index of its
 * value over the norm; the indices of elements 8 G .. 8 G + 7 ORed into one
 * word (the quad's two each by shfl.xor) and stored by lane G % 4; the
 * norm by lane 0. The vectors go through each step together, so their
 * chains of latencies overlap. Every lane of the warp calls it.
 * H100, ppl512 B 8 of the synthetic Llama-3.2-1B q8_0 + tq4: see
 * kernels/mma.cl MT_KVTQ. */
#define TQ_NQ (QE_HD / 4) /* values a lane holds of a vector */
#define TQ_NV 8            /* vectors at most: a 128-output tile's heads of 16 */
inline void tq_encode_quad(float *v, const int nv, int t4, const int bits, __global uchar *out,
                           int n_store)
{
    const int q0 = (int)(get_local_id(0) & 31) & ~3; /* the quad's first lane */
    const int vec = 2 + QE_HD * bits / 8;            /* KV_TQ_VEC */
    int finite[TQ_NV];
    float norm[TQ_NV];
#pragma unroll
    for (int h = 0; h < nv; h++) {
        finite[h] = 1;
#pragma unroll
        for (int n = 0; n < TQ_NQ; n++)
            finite[h] &= isfinite(v[TQ_NQ * h + n]) ? 1 : 0;
        finite[h] &= as_int(ptx_shfl_xor(as_float(finite[h]), 1));
        finite[h] &= as_int(ptx_shfl_xor(as_float(finite[h]), 2));
    }
#ifdef QE_FP64
    double ss[TQ_NV];
#else
    float ss[TQ_NV];
#endif
#pragma unroll
    for (int h = 0; h < nv; h++)
        ss[h] = 0.0;
#pragma unroll
    for (int p = 0; p < QE_HD / 2; p++) { /* every lane adds its own pair; lane p % 4's is taken */
#pragma unroll
        for (int h = 0; h < nv; h++) {
            /* element 2 p's register: TQ_QD(n, p % 4) == 2 p */
            const float a = v[TQ_NQ * h + 2 * (p / 4)], b = v[TQ_NQ * h + 2 * (p / 4) + 1];
#ifdef QE_FP64
            const ulong s = as_ulong((ss[h] + (double)a * (double)a) + (double)b * (double)b);
            const uint lo = as_uint(ptx_shfl_idx(as_float((uint)s), q0 + p % 4));
            const uint hi = as_uint(ptx_shfl_idx(as_float((uint)(s >> 32)), q0 + p % 4));
            ss[h] = as_double(((ulong)hi << 32) | lo);
#else
            ss[h] = ptx_shfl_idx((ss[h] + a * a) + b * b, q0 + p % 4);
#endif
        }
    }
#pragma unroll
    for (int h = 0; h < nv; h++) {
        norm[h] = (float)sqrt(ss[h]);
#pragma unroll
        for (int n = 0; n < TQ_NQ; n++)
            v[TQ_NQ * h + n] *= tq_sign_quad(n, t4);
        tq_fwht_quad(v + TQ_NQ * h, t4);
    }
#pragma unroll
    for (int h = 0; h < nv; h++) {
        const int ok = finite[h] && norm[h] > 0.0f;
#pragma unroll
        for (int g = 0; g < QE_HD / 8; g++) {
            uint w = 0;
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float z = KV_DIV(v[TQ_NQ * h + 2 * g + e], norm[h]);
                w |= (ok ? (uint)kv_tq_quantize(z, bits) : 0u) << (bits * (2 * t4 + e));
            }
            w |= as_uint(ptx_shfl_xor(as_float(w), 1));
            w |= as_uint(ptx_shfl_xor(as_float(w), 2));
            if (h < n_store && g % 4 == t4)
                for (int b = 0; b < bits; b++)
                    out[h * vec + 2 + g * bits + b] = (uchar)(w >> (8 * b));
        }
        if (h < n_store && t4 == 0)
            kv_tq_put_norm(out + h * vec, ok, finite[h], norm[h]);
    }
}
#else
#define TQ_QUAD 0
#endif
