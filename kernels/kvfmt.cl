/* kvfmt.cl - KV-cache element formats on the device: the layouts of
 * lib/kv_format.h and lib/turboquant.h, read (attention.cl) and written
 * (kv.cl) here only. No kernels; included in the programs that need it.
 *
 * Format ids are enum qe_kv_format: 0 f32, 1 f16, 2 q8_0, 3 q4_0, 4 tq4,
 * 5 tq3, 6 tq2. A cache row holds one position's n_kv heads x QE_HD values:
 *   f32/f16   plain, element e at e
 *   q8_0/q4_0 GGML blocks of 32 along the whole row (34 / 18 bytes; every
 *             block starts on an even byte, so vload_half reads its scale)
 *   tq<b>     per head: f16 norm | QE_HD*b/8 bytes of packed indices (head
 *             vectors of 2 + QE_HD*b/8 bytes may start on an odd byte, so the
 *             norm is read as two bytes)
 * kv_load(row, fmt, e) returns element e of a row as float: the stored
 * value for f32/f16/q8_0/q4_0 (the same float expression as lib/quant.c's
 * dequantizer), and for tq* the ROTATED-domain value
 * centroid[idx] * (norm / sqrt(QE_HD)), i.e. qe_turboquant_dequantize_rotated
 * (attention rotates q and un-rotates its output instead of decoding K/V to
 * the natural basis).
 *
 * Needs -DQE_HD (head dimension) and -DQE_SQRT_HD (sqrtf(QE_HD) as computed
 * by the host, a float literal); -DQE_FP64 when the device has cl_khr_fp64
 * (the encoder then reproduces the CPU's double-precision steps exactly).
 */
#if !defined(QE_HD) || !defined(QE_SQRT_HD)
#error "build with -DQE_HD and -DQE_SQRT_HD"
#endif
#ifdef QE_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
/* The codecs' float expressions must not be fused (lib/quant.h). */
#pragma OPENCL FP_CONTRACT OFF

#define KV_F32 0
#define KV_F16 1
#define KV_Q8_0 2
#define KV_Q4_0 3
#define KV_TQ4 4
#define KV_TQ3 5
#define KV_TQ2 6
#define KV_IS_TQ(f) ((f) >= KV_TQ4)
#define KV_TQ_BITS(f) ((f) == KV_TQ4 ? 4 : (f) == KV_TQ3 ? 3 : 2)
#define KV_TQ_VEC(f) (2 + QE_HD * KV_TQ_BITS(f) / 8) /* bytes per head vector */
#define TQ_SEED 0x7475726230717561UL /* QE_TURBOQUANT_SEED */

/* Lloyd-Max centroids for N(0, 1), ascending (lib/turboquant.c's tables). */
__constant float TQ_C2[4] = {-1.5104f, -0.4528f, 0.4528f, 1.5104f};
__constant float TQ_C3[8] = {-2.1520f, -1.3439f, -0.7560f, -0.2451f,
                             0.2451f,  0.7560f,  1.3439f,  2.1520f};
__constant float TQ_C4[16] = {-2.7326f, -2.0691f, -1.6181f, -1.2562f, -0.9424f, -0.6568f,
                              -0.3881f, -0.1284f, 0.1284f,  0.3881f,  0.6568f,  0.9424f,
                              1.2562f,  1.6181f,  2.0691f,  2.7326f};

inline float tq_centroid(int bits, int k)
{
    return bits == 4 ? TQ_C4[k] : bits == 3 ? TQ_C3[k] : TQ_C2[k];
}

/* Word k of the SplitMix64 stream started at seed (turboquant.h). */
inline ulong tq_word(ulong k)
{
    ulong z = TQ_SEED + (k + 1) * 0x9E3779B97F4A7C15UL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
    return z ^ (z >> 31);
}

/* Sign i (-1 or +1) from w = tq_word(i / 64). */
inline float tq_sign_of(ulong w, int i)
{
    return (w >> (i % 64)) & 1 ? -1.0f : 1.0f;
}

/* tq_signs' s[i] alone, for a work-item per element. */
inline float tq_sign_at(int i)
{
    return tq_sign_of(tq_word((ulong)(i / 64)), i);
}

/* s[i] = -1 or +1 for i < QE_HD. */
inline void tq_signs(float *s)
{
    ulong w = 0;
    for (int i = 0; i < QE_HD; i++) {
        if (i % 64 == 0)
            w = tq_word((ulong)(i / 64));
        s[i] = tq_sign_of(w, i);
    }
}

/* Unnormalized Walsh-Hadamard transform in place, Sylvester order, the
 * butterflies in lib/turboquant.c's order. */
inline void tq_fwht(float *t)
{
    for (int len = 1; len < QE_HD; len *= 2)
        for (int i = 0; i < QE_HD; i += 2 * len)
            for (int j = i; j < i + len; j++) {
                const float a = t[j], b = t[j + len];
                t[j] = a + b;
                t[j + len] = a - b;
            }
}

/* tq_fwht on a vector in local memory by work-group: work-item i of QE_HD,
 * a stage at a time (a barrier after each; the caller's barrier precedes).
 * Within a stage the butterflies touch disjoint pairs, so each computes
 * what the loop computes: the same floats. */
inline void tq_fwht_local(__local float *t, int i)
{
    for (int len = 1; len < QE_HD; len *= 2) {
        if ((i & len) == 0) {
            const float a = t[i], b = t[i + len];
            t[i] = a + b;
            t[i + len] = a - b;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* An f16 given as its bits. */
inline float kv_half_bits(ushort h)
{
    return vload_half(0, (const __private half *)&h);
}

/* An f16 stored at any byte address. */
inline float kv_half_at(const __global uchar *p)
{
    return kv_half_bits((ushort)(p[0] | (p[1] << 8)));
}

/* The packed indices of elements 8 c .. 8 c + 7 of the TurboQuant head
 * vector at v (f16 norm, then QE_HD / 8 groups of bits bytes), element
 * 8 c + i at bits i. */
inline uint kv_tq_group(const __global uchar *v, int bits, int c)
{
    const __global uchar *g = v + 2 + c * bits;
    uint w = 0;
    for (int j = 0; j < bits; j++)
        w |= (uint)g[j] << (8 * j);
    return w;
}

/* The centroid index of TurboQuant element e of a row, and in *v its head
 * vector. */
inline int kv_tq_index(const __global uchar *row, const int fmt, int e, const __global uchar **v)
{
    const int bits = KV_TQ_BITS(fmt), d = e % QE_HD;
    *v = row + (e / QE_HD) * KV_TQ_VEC(fmt);
    return (int)((kv_tq_group(*v, bits, d / 8) >> (bits * (d % 8))) & ((1u << bits) - 1));
}

/* Element e of a cache row (see the top of the file). fmt is a compile-time
 * constant at every call, so the switch folds away. */
inline float kv_load(const __global uchar *row, const int fmt, int e)
{
    if (fmt == KV_F32)
        return ((const __global float *)row)[e];
    if (fmt == KV_F16)
        return vload_half(e, (const __global half *)row);
    if (fmt == KV_Q8_0) {
        const __global uchar *b = row + (e >> 5) * 34;
        return (float)as_char(b[2 + (e & 31)]) * vload_half(0, (const __global half *)b);
    }
    if (fmt == KV_Q4_0) {
        const __global uchar *b = row + (e >> 5) * 18;
        const int j = e & 31;
        const int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
        return (float)(q - 8) * vload_half(0, (const __global half *)b);
    }
    /* TurboQuant */
    const __global uchar *v;
    const int idx = kv_tq_index(row, fmt, e, &v);
    return tq_centroid(KV_TQ_BITS(fmt), idx) * (kv_half_at(v) / QE_SQRT_HD);
}

/* ---- the TurboQuant encoder's pieces (kv.cl's kv_store, mma.cl's MT_KVTQ
 * epilogue): lib/turboquant.c's steps, byte for byte ---- */
/* The encoders' quotients: the CPU's float divisions, correctly rounded.
 * Where ptx.cl came before this file (QE_PTX: NVIDIA), div.rn.f32
 * (ptx_div_rn). Elsewhere in double where the device has it (a float
 * quotient rounded from double is the correctly rounded one), which a
 * compiler may narrow to a float division that OpenCL lets be 2.5 ulp off
 * unless the program is built with -cl-fp32-correctly-rounded-divide-sqrt,
 * as lib/engine_kv.c builds kv.cl (its build_kv says what NVIDIA did). */
#if defined(QE_PTX)
#define KV_DIV(a, b) ptx_div_rn(a, b)
#elif defined(QE_FP64)
#define KV_DIV(a, b) ((float)((double)(a) / (double)(b)))
#else
#define KV_DIV(a, b) ((a) / (b))
#endif
/* the f16 NaN the CPU stores for a block or vector that is not finite */
#define F16_NAN_LO 0x00
#define F16_NAN_HI 0x7e

/* v as an f16 at any byte address (round to nearest even) */
inline void kv_put_half(__global uchar *p, float v)
{
    /* p may be odd for tq head vectors: round through private memory. */
    ushort h;
    vstore_half_rte(v, 0, (__private half *)&h);
    p[0] = (uchar)(h & 0xff);
    p[1] = (uchar)(h >> 8);
}

/* The centroid index of a TurboQuant element z (rotated, over the norm)
 * for a table of 2^bits (bits a compile-time constant at every call).
 * lib/turboquant.c's search (while z > bound[k], k++) stops at the first
 * bound at or above z, and the bounds increase: k counts the bounds below
 * z. Counted with every bound alike, not searched, so no lane loops alone
 * or reads the table at its own address (a warp's __constant reads at
 * different addresses are served one at a time): H100, ppl512 B 8 of the
 * synthetic Llama-3.2-1B with a tq4 cache, kv_store 1.57 -> 1.26 ms a
 * forward; tg128 B 1 733 -> 752-761 tok/s; the same bytes (dump hash of
 * q8_0 + tq4 unchanged). */
inline int kv_tq_quantize(float z, const int bits)
{
    int k = 0;
#pragma unroll
    for (int m = 0; m + 1 < (1 << bits); m++)
        k += z > 0.5f * (tq_centroid(bits, m) + tq_centroid(bits, m + 1));
    return k;
}

/* A head vector's f16 norm: the norm where it could be encoded (ok), else
 * 0 (a zero vector) or NaN (a non-finite element), as lib/turboquant.c. */
inline void kv_tq_put_norm(__global uchar *v, int ok, int finite, float norm)
{
    if (ok) {
        kv_put_half(v, norm);
    } else {
        v[0] = finite ? 0 : F16_NAN_LO;
        v[1] = finite ? 0 : F16_NAN_HI;
    }
}

/* ---- TurboQuant with the centroids in local memory ----
 * On NVIDIA a warp's __constant reads at different addresses are served one
 * address at a time, and the lanes of a TurboQuant decode read up to 16
 * different centroids. Kernels that decode many elements copy the table
 * into local memory once (kv_tq_lut) and read it there: the same floats,
 * so the same bits as kv_load. */

/* lut[k] = centroid k of format fmt's table, k < 2^bits; work-item t of n
 * (the caller's barrier follows). */
inline void kv_tq_lut(__local float *lut, const int fmt, int t, int n)
{
    for (int k = t; k < (1 << KV_TQ_BITS(fmt)); k += n)
        lut[k] = tq_centroid(KV_TQ_BITS(fmt), k);
}

/* kv_load of TurboQuant element e, its centroid from lut. */
inline float kv_tq_load_lut(const __global uchar *row, const int fmt, int e,
                            const __local float *lut)
{
    const __global uchar *v;
    const int idx = kv_tq_index(row, fmt, e, &v);
    return lut[idx] * (kv_half_at(v) / QE_SQRT_HD);
}

/* Elements 8 c .. 8 c + 7 of the head vector at v (c < QE_HD / 8) into
 * out, each as kv_tq_load_lut: its index bytes read once for the eight;
 * sc = kv_half_at(v) / QE_SQRT_HD, the vector's scale. */
inline void kv_tq_load8_lut(const __global uchar *v, const int fmt, int c, float sc,
                            const __local float *lut, float *out)
{
    const int bits = KV_TQ_BITS(fmt);
    const uint w = kv_tq_group(v, bits, c);
    for (int i = 0; i < 8; i++)
        out[i] = lut[(w >> (bits * i)) & ((1u << bits) - 1)] * sc;
}
