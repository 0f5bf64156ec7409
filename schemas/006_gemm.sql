-- 006_gemm.sql - which matrix-product kernels a bench row measured
-- (lib/engine.h qe_gemm): 'f32' (kernels/matmul.cl, any device) or 'mma'
-- (kernels/mma.cl, NVIDIA tensor cores through inline PTX). Rows written
-- before this migration were all measured with the f32 kernels.
ALTER TABLE bench ADD COLUMN gemm TEXT NOT NULL DEFAULT 'f32' CHECK (gemm IN ('f32', 'mma'));
