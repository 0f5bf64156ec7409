-- 007_session_gemm.sql - the matmul kernels a session's engines used
-- (lib/engine.h qe_gemm, resolved on its device): 'f32' (kernels/matmul.cl),
-- 'mma' (kernels/mma.cl, f16 operands on NVIDIA tensor cores), '-' for the
-- C reference. Log-probs of the two kernel families differ in the last bits,
-- so compare runs computed with the same one. Sessions written before this
-- migration ran the f32 kernels or the C reference.
ALTER TABLE sessions ADD COLUMN gemm TEXT NOT NULL DEFAULT 'f32';
