#!/usr/bin/env bash
# Nsight Compute on the decode GEMV (mma_skinny's one-row build, as a B 1
# decode step of the synthetic Llama-3.2-1B runs it) on the GPU machine
# (device tool, carry .debs): its PTX from NVIDIA's OpenCL compiler
# (bench/cl_regs.c) run through the CUDA driver (bench/ptx_run.c), each
# launch's median and ncu's throughput, occupancy and warp-stall sections;
# the whole reports in $OUT/ncu-NAME.txt. Knob: WT (2 q8_0, 3 q4_0).
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
for c in gateup:2,4:528:1:16384:2048:2 down:2,8:0:2:2048:8192:1 wo:2,8:0:0:2048:2048:1 \
         qkv:2,8:0:1:3072:2048:3; do
    IFS=: read -r name sh groups xop n k nw <<<"$c"
    IFS=, read -r nb u <<<"$sh"
    CL_REGS_PTX=/tmp/t.ptx /tmp/cl_regs "-DQE_WT=$WT -DQE_NW=256 -DMS_MT=1 -DMS_NB=$nb -DMS_U=$u \
-DMS_XAL -DMS_X1=8192" $SRCS >/dev/null 2>&1 || { echo "$name: build failed"; continue; }
    tr -d '\000' </tmp/t.ptx | sed -E -e 's/%envreg[0-9]+/0/g' -e '/^\.metadata_section/,$d' >/tmp/k.ptx
    export MS_NB=$nb GROUPS=$groups XOP=$xop
    echo "== $name: $(/tmp/ptx_run /tmp/k.ptx skinny $WT 1 $n $k $nw 50)"
    ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats \
        --section WarpStateStats --section MemoryWorkloadAnalysis --section SchedulerStats \
        -k mma_skinny -s 5 -c 1 /tmp/ptx_run /tmp/k.ptx skinny $WT 1 $n $k $nw 10 \
        >"$OUT/ncu-$name.txt" 2>&1
    grep -E "Duration|DRAM Throughput|Memory Throughput|L2 Hit|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Stall" \
        "$OUT/ncu-$name.txt" | head -24
done
