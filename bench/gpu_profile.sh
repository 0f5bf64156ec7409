#!/usr/bin/env bash
# Where the device time goes, on the GPU machine (device tool, carry .debs):
#   bash bench/gpu_profile.sh [ARCH] [WEIGHTS]   (defaults llama-3.2-1b q8_0)
# qeval bench --profile for pp512 B8 and tg128 B1 / B64, with every kernel
# launch named by its global size (QEVAL_PROFILE_SHAPES), so each matmul
# shape of a layer shows as its own line. One repetition each: breakdowns,
# not speeds (profiling events serialise the queue). Then the ptxas report
# (registers, spills, shared memory) of the matmul builds.
set -u
ARCH=${1:-llama-3.2-1b}
WT=${2:-q8_0}
OUT=${OUT:-/tmp/qeval-gpu}
mkdir -p "$OUT"
source bench/gpu_env.sh
qe_gpu_build "$OUT" || exit 1
Q=build-gpu/bin/qeval
M=$(qe_gpu_synth "$ARCH") || exit 1
export QEVAL_PROFILE_SHAPES=1
$Q bench -d nvidia -m "$M" -p 512 -n 0 -b 8 --weights "$WT" --kv f16 -r 1 --profile
$Q bench -d nvidia -m "$M" -p 0 -n 128 -b 1,64 --weights "$WT" --kv f16 -r 1 --profile
# Wall-clock speed without profiling, and what the launches cost the host:
# a step's launches, each one's time in clEnqueueNDRangeKernel, and their sum
# against the step's wall time (the host enqueues while the GPU runs, so the
# GPU starves where kernels are shorter than a launch's host time)
$Q bench -d nvidia -m "$M" -p 0 -n 128 -b 1,64 --weights "$WT" --kv f16 -r 2 -o json >"$OUT/tg-plain.json"
python3 - "$OUT/tg-plain.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    steps = r["n_gen"] * r["reps"]
    print("%s B %d: %.1f tok/s, %.3f ms a step; host: %.1f launches a step, %.2f us each, "
          "%.3f ms a step; %.3f ms a step blocked on the device"
          % (r["test"], r["n_batch"], r["mean_tps"], 1e3 * sum(r["samples_s"]) / steps,
             r["launches"] / steps, 1e6 * r["enqueue_s"] / r["launches"],
             1e3 * r["enqueue_s"] / steps, 1e3 * r["wait_s"] / steps))
PY
# Registers, spills and local memory of the matmul builds (NVIDIA's ptxas
# report through bench/cl_regs.c), with the engine's default shapes
# (mma_tile wants its X order, -DMT_XO: lib/engine.c xh_order)
case "$WT" in q8_0) QW=2 XO=2 ;; q4_0) QW=3 XO=1 ;; f32) QW=0 XO=0 ;; *) QW=1 XO=0 ;; esac
cc -o /tmp/cl_regs bench/cl_regs.c -lOpenCL || exit 1
# (the engine's sources of these builds, in its order: lib/engine.c msrcs;
# -DQE_NW for rms.cl, 256 at Llama-3.2-1B's width; the one-row decode build
# with -DMS_X1 as the engine makes it for Q8_0 / Q4_0)
for o in "-DMT_XO=$XO" "-DMS_MT=1 -DMS_NB=2 -DMS_U=4" "-DMS_MT=1 -DMS_NB=2 -DMS_U=4 -DMS_XAL -DMS_X1=8192" \
         "-DMW_NB=2 -DMW_U=2 -DMW_SPLIT=1" "-DMW_NB=2 -DMW_U=2 -DMW_SPLIT=8"; do
    /tmp/cl_regs "-DQE_WT=$QW -DQE_NW=256 $o" kernels/weights.cl kernels/ptx.cl kernels/xh.cl \
        kernels/rms.cl kernels/act.cl kernels/qkv.cl kernels/mma.cl |
        awk -v o="${o/-DMT_XO=$XO/mma_tile}" '/Compiling entry/ {k = $(NF - 2)} /Used|spill/ {print o ": " k ": " $0}'
done
