#!/usr/bin/env bash
# mma_tile builds side by side on the GPU machine (device tool, carry .debs),
# outside qeval: each build's PTX from NVIDIA's OpenCL compiler
# (bench/cl_regs.c), patched for wgmma where it is an MT_WG build
# (bench/wgmma_probe.c --ptx, as lib/cl's qe_cl_wgmma_patch does), ptxas's
# report (registers, local memory, C75xx messages), and its median time
# through the CUDA driver (bench/ptx_run.c) on two prefill shapes:
# 4096 x 8192 x 2048 (gate / up alone) and 4096 x 2048 x 8192 (down).
# With NCU="I ..." also Nsight Compute's throughput, occupancy and stall
# sections ($OUT/ncu-I.log) and its per-instruction source view
# ($OUT/src-I.csv: stall samples, L2 sectors and local-memory wavefronts
# against their ideal per SASS line) for build I.
#   VARIANTS="MT_WG=0;MT_WG=1" bash bench/gpu_tile.sh
# Knobs: VARIANTS (builds separated by ';', each NAME=VALUE words added as
# -D options; NREG=N adds .maxnreg N to the entry instead), WT (1 f16,
# 2 q8_0, 3 q4_0; the weight format and its X order), MMA (the mma.cl to
# build: a modified copy for A/B), NCU; a variant's MT_BM (the last given
# wins over the default 128) sets ptx_run's launch shape. Session 20 found
# the MT_WG build's half speed this way (README "Session 20"); session 21
# measured 256-row tiles: VARIANTS="MT_WG=1;MT_WG=1 MT_BM=256 MT_S=2", session
# 29 64-row ones: VARIANTS="MT_WG=1;MT_WG=1 MT_BM=64 MT_S=4".
set -u
OUT=${OUT:-/tmp/qeval-gpu}
L=$(mktemp -d /tmp/qeval-tile-XXXXXX)
mkdir -p "$OUT"
source bench/gpu_env.sh
export PATH=$PATH:/usr/local/cuda/bin
cc -O2 -o /tmp/cl_regs bench/cl_regs.c -lOpenCL || exit 1
cc -O2 -o /tmp/ptx_run bench/ptx_run.c -I/usr/local/cuda/include -lcuda || exit 1
cc -O2 -o /tmp/wgmma_probe bench/wgmma_probe.c -lOpenCL -lm || exit 1
WT=${WT:-1}
XO=0
[ "$WT" = 2 ] && XO=2
[ "$WT" = 3 ] && XO=1
SRCS="kernels/weights.cl kernels/ptx.cl kernels/wgmma.cl kernels/xh.cl kernels/rms.cl \
kernels/act.cl kernels/qkv.cl ${MMA:-kernels/mma.cl}"
i=0
IFS=';' read -ra VS <<<"${VARIANTS:-MT_WG=0;MT_WG=1}"
for v in "${VS[@]}"; do
    i=$((i + 1))
    opts="-DQE_WT=$WT -DQE_NW=256 -DMT_XO=$XO -DMT_BM=128 -DMT_WN=32"
    nreg=
    for d in $v; do
        case $d in NREG=*) nreg=${d#NREG=} ;; *) opts="$opts -D$d" ;; esac
    done
    case "$opts" in *MT_S=*) ;; *) opts="$opts -DMT_S=3" ;; esac
    case "$opts" in *MT_GM=*) ;; *) opts="$opts -DMT_GM=0" ;; esac
    echo "== $i: $v"
    # shellcheck disable=SC2086 # SRCS are words
    CL_REGS_PTX=$L/t.ptx timeout 120 /tmp/cl_regs "$opts" $SRCS >"$L/build-$i.log" 2>&1 ||
        { echo "build failed"; tail -5 "$L/build-$i.log"; continue; }
    # the PTX as the CUDA driver loads it, patched for wgmma where the build uses it
    qe_gpu_cuda_ptx "$L/t.ptx" "$L/t2.ptx" ||
        { echo "$(grep -m1 -o '%envreg[0-9]*' "$L/t2.ptx") left in the PTX"; continue; }
    case "$v" in
    *MT_WG=1*) /tmp/wgmma_probe --ptx "$L/t2.ptx" >"$L/k$i.ptx" ;;
    *) cp "$L/t2.ptx" "$L/k$i.ptx" ;;
    esac
    [ -n "$nreg" ] && sed -i -E "/^\.entry mma_tile\(/,/^\{/ s/^\{/.maxnreg $nreg\n{/" "$L/k$i.ptx"
    ptxas -arch=sm_90a -v "$L/k$i.ptx" -o "$L/t.cubin" >"$L/ptxas-$i.log" 2>&1
    grep -E "C75|Used|rror" "$L/ptxas-$i.log" | grep -v "Used 18 reg" | sed -E 's/ by compiler.*//' | head -4
    # the launch shape the build wants: MT_BM rows, 32 x MT_BM / 64 x 4 work-items
    bm=$(sed -nE 's/.*-DMT_BM=([0-9]+).*/\1/p' <<<"$opts")
    export MT_BM=$bm WI=$((32 * bm / 64 * 4))
    timeout 60 /tmp/ptx_run "$L/k$i.ptx" tile "$WT" 4096 8192 2048 1 20
    timeout 60 /tmp/ptx_run "$L/k$i.ptx" tile "$WT" 4096 2048 8192 1 20
    unset MT_BM WI
done
for n in ${NCU:-}; do
    echo "== ncu $n"
    timeout 200 ncu --clock-control none --section SpeedOfLight --section Occupancy \
        --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis \
        --section MemoryWorkloadAnalysis --print-details all -k mma_tile -s 2 -c 1 \
        /tmp/ptx_run "$L/k$n.ptx" tile "$WT" 4096 8192 2048 1 4 >"$OUT/ncu-$n.log" 2>&1
    grep -E "Duration|L2 Cache Throughput|Pipe Tensor Cycles|Issue Slots Busy|Achieved Occupancy|Block Limit (Registers|Shared)|Stall (Long|Barrier|Wait|MIO)" \
        "$OUT/ncu-$n.log" | head -16
    timeout 200 ncu --clock-control none --section SourceCounters --page source --print-source sass \
        --csv -k mma_tile -s 2 -c 1 /tmp/ptx_run "$L/k$n.ptx" tile "$WT" 4096 8192 2048 1 4 \
        >"$OUT/src-$n.csv" 2>&1
done
rm -rf "$L"
