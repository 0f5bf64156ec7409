/* kv.cl - the KV-cache write: encode f32 K/V rows into a cache format
 * (needs kvfmt.cl, qkv.cl, -DQE_KVF=<format id> and -DTR_WI).
 *
 * kv_store: source row r (n_kv * QE_HD floats, K already rotated by RoPE)
 *   is encoded into cache row (r / y_seq) * y_seq_stride + y_off + r % y_seq
 *   (row_bytes bytes each), or, when rslot is not NULL (a decode call's
 *   ragged rows, lib/engine_decode.c), row rslot[r] * y_seq_stride + rpos[r].
 *   The encoders reproduce lib/kv_format.c byte for byte (lib/quant.c's
 *   Q8_0/Q4_0 quantizers, lib/turboquant.c's encoder):
 *   the same float expressions in the same order, no contraction, f16 by
 *   round-to-nearest-even (vstore_half_rte), divisions correctly rounded
 *   (kvfmt.cl KV_DIV) and the TurboQuant norm in double when QE_FP64 is set
 *   (the norm is defined as a double sum). Without fp64, or built without
 *   -cl-fp32-correctly-rounded-divide-sqrt where the device lacks it, a rare
 *   byte may differ from the CPU's.
 *   Work-items: one per element (f32, f16) or per block of 32 (q8_0, q4_0):
 *   global (units per row, n_rows, 1), any local size, each unit encoded
 *   sequentially by one work-item, so its arithmetic is exactly the CPU
 *   loop's; tq*: QE_HD work-items per head vector, global (n_kv QE_HD,
 *   n_rows, 1), local (QE_HD tv, 1, 1) for tv vectors of a row (tv at most
 *   KS_V, which -DTR_WI bounds), work-item i rotating, scaling and rounding
 *   element i (the norm added up by one work-item in element order, the
 *   Walsh-Hadamard butterflies a stage at a time: each value the CPU's). A
 *   decode step has one row: a work-item per head vector had left 16
 *   work-items to encode a layer's K and V, 46 us a launch on the H200
 *   (tg128 B 1 tq4, 35 % of the step); one vector a work-group then took
 *   72 us a launch at pp512 B 8 (4,096 rows), where each serial norm sum
 *   held 63 work-items. Global (.., .., 2) also
 *   encodes src_b into dst_b the same way (a layer's V rows with its K rows,
 *   when both caches have this format: one launch).
 * kv_load_rows: tests only: decodes rows with kvfmt.cl's kv_load into
 *   floats (tq*: the rotated domain), global (n_kv * QE_HD, n_rows).
 * kv_div_rows: tests only: the encoders' quotients (kvfmt.cl KV_DIV) of n
 *   pairs, global (n).
 */
#ifndef QE_KVF
#error "build with -DQE_KVF=<KV-cache format>"
#endif

#ifndef TR_WI
#error "build with -DTR_WI=<most work-items of a TurboQuant work-group>"
#endif
/* -DQE_SHFL (ptx.cl before this file; lib/engine_kv.c build_kv): a
 * TurboQuant head vector of 32 .. 128 elements (a multiple of 32) held by
 * one warp, KS_K consecutive elements a work-item (kv_store_tq_warp) */
#if defined(QE_SHFL) && KV_IS_TQ(QE_KVF) && QE_HD % 32 == 0 && QE_HD <= 128
#define KS_WARP 1
#define KS_K (QE_HD / 32)
#define KS_N 32
#else
#define KS_WARP 0
#define KS_K 1
#define KS_N QE_HD
#endif
#define KS_V (TR_WI / KS_N > 1 ? TR_WI / KS_N : 1) /* head vectors a work-group, at most */

/* roundf(v) as an int8, saturated (lib/quant.c's sat_i8). */
inline char kv_sat_i8(float v)
{
    if (!(v > -128.0f))
        return v < 0.0f ? (char)-128 : (char)0;
    return v >= 127.0f ? (char)127 : (char)(int)v;
}

/* min(15, (int)v), NaN -> 0 (lib/quant.c's nibble_q4_0). */
inline uint kv_nibble(float v)
{
    if (v >= 15.0f)
        return 15;
    return v > 0.0f ? (uint)v : 0;
}

#if KS_WARP
/* kv_store's TurboQuant encoder for head vector x of a warp: the same
 * floats as the local-memory one below, which is lib/turboquant.c's. The
 * norm is the same double (or float) sum in element order, added by every
 * lane from shfl.idx broadcasts (one work-item had added it there while
 * the others waited at a barrier); the butterflies in tq_fwht's order, pairs
 * inside a work-item in registers and the rest by shfl.xor; each group of
 * 8 indices meets by shfl.xor ORs in its first lane. H100, ppl512 B 8 of
 * the synthetic Llama-3.2-1B with a tq4 cache: see lib/engine_kv.c. */
inline void kv_store_tq_warp(const __global float *x, __global uchar *v)
{
    const int lane = get_local_id(0) % 32, bits = KV_TQ_BITS(QE_KVF);
    float a[KS_K];
#pragma unroll
    for (int k = 0; k < KS_K; k++)
        a[k] = x[KS_K * lane + k];
    int finite = 1;
#ifdef QE_FP64
    double ss = 0.0;
#else
    float ss = 0.0f;
#endif
#pragma unroll
    for (int e = 0; e < QE_HD; e++) {
        const float te = ptx_shfl_idx(a[e % KS_K], e / KS_K);
#ifdef QE_FP64
        ss += (double)te * (double)te;
#else
        ss += te * te;
#endif
        finite &= isfinite(te) ? 1 : 0;
    }
    const float norm = (float)sqrt(ss);
    const int ok = finite && norm > 0.0f;
#pragma unroll
    for (int k = 0; k < KS_K; k++)
        a[k] *= tq_sign_at(KS_K * lane + k);
#pragma unroll
    for (int len = 1; len < KS_K; len *= 2)
#pragma unroll
        for (int k = 0; k < KS_K; k++)
            if (!(k & len)) {
                const float lo = a[k], hi = a[k | len];
                a[k] = lo + hi;
                a[k | len] = lo - hi;
            }
#pragma unroll
    for (int len = KS_K; len < QE_HD; len *= 2)
#pragma unroll
        for (int k = 0; k < KS_K; k++) {
            const float b = ptx_shfl_xor(a[k], len / KS_K);
            a[k] = (lane & (len / KS_K)) ? b - a[k] : a[k] + b;
        }
    /* element e's index at bits (e % 8) of its group's word */
    uint w = 0;
#pragma unroll
    for (int k = 0; k < KS_K; k++) {
        const int q = ok ? kv_tq_quantize(KV_DIV(a[k], norm), bits) : 0;
        w |= (uint)q << (bits * ((KS_K * lane + k) % 8));
    }
#pragma unroll
    for (int o = 1; o < 8 / KS_K; o *= 2)
        w |= as_uint(ptx_shfl_xor(as_float(w), o));
    if (lane % (8 / KS_K) == 0) {
        const int g = KS_K * lane / 8;
        for (int b = 0; b < bits; b++)
            v[2 + g * bits + b] = (uchar)(w >> (8 * b));
    }
    if (lane == 0)
        kv_tq_put_norm(v, ok, finite, norm);
}
#endif

__kernel void kv_store(const __global float *src, int n_kv, /* [n_rows][n_kv*QE_HD] */
                       __global uchar *dst, ulong row_bytes,
                       int y_seq, int y_seq_stride, int y_off, int n_rows,
                       const __global int *rslot, const __global int *rpos,
                       const __global float *src_b, __global uchar *dst_b)
{
    const int u = get_global_id(0), r = get_global_id(1);
    if (get_global_id(2)) { /* the second pair (V beside K, one launch) */
        src = src_b;
        dst = dst_b;
    }
    const int n = n_kv * QE_HD;
    if (r >= n_rows)
        return;
    const __global float *x = src + (size_t)r * n;
    const ulong at = rslot ? (ulong)rslot[r] * y_seq_stride + rpos[r]
                           : (ulong)(r / y_seq) * y_seq_stride + y_off + r % y_seq;
    __global uchar *row = dst + at * row_bytes;
#if QE_KVF == KV_F32
    if (u < n)
        ((__global float *)row)[u] = x[u];
#elif QE_KVF == KV_F16
    if (u >= n)
        return;
    f16_put((__global ushort *)row, u, x[u]);
#elif QE_KVF == KV_Q8_0 || QE_KVF == KV_Q4_0
    if (u >= n / 32)
        return;
    x += u * 32;
    const int bs = QE_KVF == KV_Q8_0 ? 34 : 18;
    __global uchar *b = row + u * bs;
    int finite = 1;
    for (int j = 0; j < 32; j++)
        finite &= isfinite(x[j]) ? 1 : 0;
    if (!finite) {
        b[0] = F16_NAN_LO;
        b[1] = F16_NAN_HI;
        for (int j = 2; j < bs; j++)
            b[j] = 0;
        return;
    }
#if QE_KVF == KV_Q8_0
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fmax(amax, fabs(x[j]));
    const float d = KV_DIV(amax, 127.0f);
    const float id = d != 0.0f ? KV_DIV(1.0f, d) : 0.0f;
    vstore_half_rte(d, 0, (__global half *)b);
    for (int j = 0; j < 32; j++) {
        const float v = x[j] * id;
        b[2 + j] = as_uchar(kv_sat_i8(round(v)));
    }
#else
    float amax = 0.0f, mx = 0.0f;
    for (int j = 0; j < 32; j++)
        if (amax < fabs(x[j])) {
            amax = fabs(x[j]);
            mx = x[j];
        }
    const float d = KV_DIV(mx, -8.0f);
    const float id = d != 0.0f ? KV_DIV(1.0f, d) : 0.0f;
    vstore_half_rte(d, 0, (__global half *)b);
    for (int j = 0; j < 16; j++) {
        float v0 = x[j] * id, v1 = x[j + 16] * id;
        v0 += 8.5f;
        v1 += 8.5f;
        b[2 + j] = (uchar)(kv_nibble(v0) | kv_nibble(v1) << 4);
    }
#endif
#elif KS_WARP /* TurboQuant, a warp a head vector */
    kv_store_tq_warp(x + u / 32 * QE_HD, row + u / 32 * KV_TQ_VEC(QE_KVF));
#else /* TurboQuant: head vectors h of the work-group's, work-item i their element i */
    const int i = get_local_id(0) % QE_HD, j = get_local_id(0) / QE_HD, h = u / QE_HD;
    x += h * QE_HD;
    __global uchar *v = row + h * KV_TQ_VEC(QE_KVF);
    const int bits = KV_TQ_BITS(QE_KVF);
    __local float ts[KS_V][QE_HD];
    __local uchar idxs[KS_V][QE_HD];
    __local float norm_s[KS_V];
    __local int finite_s[KS_V];
    __local float *t = ts[j];
    __local uchar *idx = idxs[j];
    t[i] = x[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    if (i == 0) { /* the norm is a sum in element order: one work-item adds */
        int finite = 1;
#ifdef QE_FP64
        double ss = 0.0;
        for (int k = 0; k < QE_HD; k++) {
            ss += (double)t[k] * (double)t[k];
            finite &= isfinite(t[k]) ? 1 : 0;
        }
        norm_s[j] = (float)sqrt(ss);
#else
        float ss = 0.0f;
        for (int k = 0; k < QE_HD; k++) {
            ss += t[k] * t[k];
            finite &= isfinite(t[k]) ? 1 : 0;
        }
        norm_s[j] = sqrt(ss);
#endif
        finite_s[j] = finite;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const float norm = norm_s[j];
    const int ok = finite_s[j] && norm > 0.0f;
    /* every vector takes the barriers (the work-group's vectors differ);
       one that is not ok rotates too, but keeps index 0 */
    t[i] = tq_sign_at(i) * t[i]; /* tq_signs' s[i] x[i] */
    barrier(CLK_LOCAL_MEM_FENCE);
    tq_fwht_local(t, i);
    if (i == 0)
        kv_tq_put_norm(v, ok, finite_s[j], norm);
    idx[i] = (uchar)(ok ? kv_tq_quantize(KV_DIV(t[i], norm), bits) : 0);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (i < QE_HD / 8) {
        uint w = 0;
        for (int e = 0; e < 8; e++)
            w |= (uint)idx[8 * i + e] << (bits * e);
        for (int b = 0; b < bits; b++)
            v[2 + i * bits + b] = (uchar)(w >> (8 * b));
    }
#endif
}

__kernel void kv_load_rows(const __global uchar *src, ulong row_bytes, int n, /* n = n_kv*QE_HD */
                           __global float *y)                                /* [n_rows][n] */
{
    const int e = get_global_id(0), r = get_global_id(1);
    if (e < n)
        y[(size_t)r * n + e] = kv_load(src + (ulong)r * row_bytes, QE_KVF, e);
}

__kernel void kv_div_rows(const __global float *a, const __global float *b, int n,
                          __global float *y)
{
    const int i = get_global_id(0);
    if (i < n)
        y[i] = KV_DIV(a[i], b[i]);
}
