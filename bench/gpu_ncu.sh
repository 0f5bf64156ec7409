#!/usr/bin/env bash
# Nsight Compute on the decode GEMV (mma_skinny's one-row build, as a B 1
# decode step of the synthetic Llama-3.2-1B runs it) on the GPU machine
# (device tool, carry .debs): its PTX from NVIDIA's OpenCL compiler
# (bench/cl_regs.c) run through the CUDA driver (bench/ptx_run.c), each
# launch's median and ncu's throughput, occupancy and warp-stall sections;
# the whole reports in $OUT/ncu-NAME.log. Knobs: WT (2 q8_0, 3 q4_0),
# LAUNCHES (NAME:NB,U:GROUPS:XOP:N:K:WEIGHTS entries, default below),
# NCU_SECTIONS (ncu's options instead of the sections below, e.g.
# "--set full --section WarpStateStats --section SourceCounters").
#   bash bench/gpu_ncu.sh
set -u
OUT=${OUT:-/tmp/qeval-gpu}
mkdir -p "$OUT"
source bench/gpu_env.sh
export PATH=$PATH:/usr/local/cuda/bin
cc -O2 -o /tmp/cl_regs bench/cl_regs.c -lOpenCL || exit 1
cc -O2 -o /tmp/ptx_run bench/ptx_run.c -I/usr/local/cuda/include -lcuda || exit 1
WT=${WT:-2}
SRCS="kernels/weights.cl kernels/ptx.cl kernels/xh.cl kernels/rms.cl kernels/act.cl kernels/qkv.cl kernels/mma.cl"
# NAME:NB,U:GROUPS:XOP:N:K:WEIGHTS - the launches of a decode step at B 1
# (lib/engine.c: gate/up 4 work-groups a compute unit; wo / down the
# second shape; Q/K/V three weights)
# Each step has its own time limit and log in $OUT, so one that hangs shows
# where (a first run of this script produced nothing in 500 s).
step() { # NAME SECONDS CMD...: run CMD, its output in $OUT/NAME.log
    local n=$1 t=$2
    shift 2
    echo "-- $(date +%T) $n"
    timeout "$t" "$@" >"$OUT/$n.log" 2>&1
    local rc=$?
    [ $rc = 0 ] || { echo "$n: exit $rc"; tail -5 "$OUT/$n.log"; }
    return $rc
}
for c in ${LAUNCHES:-gateup:2,4:528:1:16384:2048:2 down:2,8:0:2:2048:8192:1 wo:2,8:0:0:2048:2048:1 \
         qkv:2,8:0:1:3072:2048:3}; do
    IFS=: read -r name sh groups xop n k nw <<<"$c"
    IFS=, read -r nb u <<<"$sh"
    CL_REGS_PTX=/tmp/t.ptx step "build-$name" 120 /tmp/cl_regs "-DQE_WT=$WT -DQE_NW=256 -DMS_MT=1 \
-DMS_NB=$nb -DMS_U=$u -DMS_XAL -DMS_X1=8192" $SRCS || continue
    grep -E "registers|spill" "$OUT/build-$name.log" | grep -i skinny -A2 | head -4
    qe_gpu_cuda_ptx /tmp/t.ptx /tmp/k.ptx ||
        { echo "$name: $(grep -m1 envreg /tmp/k.ptx): unknown"; continue; }
    export MS_NB=$nb MS_GROUPS=$groups XOP=$xop
    step "run-$name" 60 /tmp/ptx_run /tmp/k.ptx skinny $WT 1 $n $k $nw 50 && cat "$OUT/run-$name.log"
    # shellcheck disable=SC2086
    step "ncu-$name" 180 ncu --clock-control none ${NCU_SECTIONS:---section SpeedOfLight \
        --section Occupancy --section LaunchStats --section WarpStateStats \
        --section MemoryWorkloadAnalysis --section SchedulerStats} -k mma_skinny -s 5 -c 1 \
        /tmp/ptx_run /tmp/k.ptx skinny $WT 1 $n $k $nw 10 || continue
    grep -E "Duration|DRAM Throughput|Memory Throughput|L2 Hit|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Stall" \
        "$OUT/ncu-$name.log" | head -24
done
