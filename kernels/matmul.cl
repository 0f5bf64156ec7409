/* matmul.cl - Y = X W^T for a batch of rows (needs weights.cl and -DQE_WT).
 *
 * matmul: for r < n_rows, o < N (X[r] = x + x_off + r * ldx):
 *     acc = sum_{k=0..K-1} X[r][k] * W[o][k]        (f32, k in order)
 *     Y[yrow(r)][o] = (accumulate ? Y[yrow(r)][o] : 0) + acc
 *   with yrow(r) = (r / y_seq) * y_seq_stride + r % y_seq, so the rows of a
 *   sequence can land in a cache laid out with another stride (K/V cache:
 *   y_seq = n_tok, y_seq_stride = n_ctx; plain: y_seq = y_seq_stride = n_rows).
 *   accumulate = 1 adds into Y (the residual stream).
 * Work-group (16, 16) computes a 64-row x 64-output tile, 4 x 4 per
 *   work-item, staging 16-wide K slices of X and W in local memory (8.5 KiB).
 *   global = (ceil(N/64)*16, ceil(n_rows/64)*16).
 * Each output is one work-item's sum over k = 0..K-1 in order, whatever the
 *   tile or batch it belongs to: a row's result never depends on the other
 *   rows of the batch (batch invariance). Out-of-range rows/columns load 0.
 * Limits: K, N, n_rows < 2^31; W up to 2^64 bytes (offsets are ulong).
 */
#define MM_BM 64
#define MM_BN 64
#define MM_BK 16
#define MM_T 16 /* work-items per dimension */

__kernel __attribute__((reqd_work_group_size(MM_T, MM_T, 1)))
void matmul(const __global float *x, ulong x_off,           /* X rows start at x + x_off */
            int ldx, int n_rows,                             /* X [n_rows][ldx], K used */
            const __global uchar *w, ulong w_row_bytes,      /* W [N] rows */
            int K, int N,
            __global float *y, int ldy,                      /* Y rows of ldy floats */
            int y_seq, int y_seq_stride, int accumulate)
{
    __local float xs[MM_BK][MM_BM + 1];
    __local float ws[MM_BK][MM_BN + 1];
    const int tn = get_local_id(0), tm = get_local_id(1);
    const int lid = tm * MM_T + tn;
    const int n0 = get_group_id(0) * MM_BN, m0 = get_group_id(1) * MM_BM;
    x += x_off;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += MM_BK) {
        for (int e = lid; e < MM_BM * MM_BK; e += MM_T * MM_T) {
            int mm = e / MM_BK, kk = e % MM_BK;
            int r = m0 + mm, k = k0 + kk;
            xs[kk][mm] = (r < n_rows && k < K) ? x[(size_t)r * ldx + k] : 0.0f;
            int o = n0 + mm;
            ws[kk][mm] = (o < N && k < K) ? wt_load(w, w_row_bytes, o, k) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < MM_BK; kk++) {
            float a[4], b[4];
            for (int i = 0; i < 4; i++)
                a[i] = xs[kk][tm + MM_T * i];
            for (int j = 0; j < 4; j++)
                b[j] = ws[kk][tn + MM_T * j];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    acc[i][j] += a[i] * b[j];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (int i = 0; i < 4; i++) {
        int r = m0 + tm + MM_T * i;
        if (r >= n_rows)
            continue;
        size_t yr = (size_t)(r / y_seq) * y_seq_stride + r % y_seq;
        for (int j = 0; j < 4; j++) {
            int o = n0 + tn + MM_T * j;
            if (o >= N)
                continue;
            size_t at = yr * ldy + o;
            y[at] = (accumulate ? y[at] : 0.0f) + acc[i][j];
        }
    }
}
