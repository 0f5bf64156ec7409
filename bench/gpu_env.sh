#!/usr/bin/env bash
# Source this on the GPU machine (device tool) to build and run qeval there.
# That image has a CUDA toolchain but not qeval's Debian libraries, so the
# lead carries them as .deb files in .debs/ (`apt-get download ...`, see
# README "GPU machine") and this script unpacks them into a private prefix.
# It also registers NVIDIA's OpenCL ICD, which the image does not do.
#   usage: source bench/gpu_env.sh && make BUILD=build-gpu BINDIR=build-gpu/bin
set -e
QE_PREFIX=${QE_PREFIX:-/tmp/qe-deps}
if [ ! -d "$QE_PREFIX/usr" ]; then
    mkdir -p "$QE_PREFIX"
    for f in .debs/*.deb; do dpkg -x "$f" "$QE_PREFIX"; done
fi
mkdir -p /etc/OpenCL/vendors
[ -f /etc/OpenCL/vendors/nvidia.icd ] || echo libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd
LIBDIR=$QE_PREFIX/usr/lib/x86_64-linux-gnu
# Dev symlinks in the .debs are absolute; point them into the prefix.
for l in "$LIBDIR"/*.so; do
    t=$(readlink "$l" || true)
    case "$t" in /*) ln -sf "$QE_PREFIX$t" "$l" 2>/dev/null || ln -sf "$(basename "$t")" "$l";; esac
done
export CPATH=$QE_PREFIX/usr/include${CPATH:+:$CPATH}
export LIBRARY_PATH=$LIBDIR${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
export OCL_ICD_VENDORS=/etc/OpenCL/vendors
set +e

# qe_gpu_build OUT [TARGETS...]: build qeval here (build-gpu/, default target
# the binary), the log in OUT/build.log; its tail and status 1 on failure.
qe_gpu_build() {
    local out=$1
    shift
    make -j16 BUILD=build-gpu BINDIR=build-gpu/bin "${@:-build-gpu/bin/qeval}" >"$out/build.log" 2>&1 ||
        { tail -20 "$out/build.log"; return 1; }
}

# qe_gpu_synth ARCH: prints the path of ARCH's synthetic f16 model, written
# by `qeval synth` the first time on this machine.
qe_gpu_synth() {
    local m=/tmp/qeval-synth-$1-f16.gguf
    [ -f "$m" ] || build-gpu/bin/qeval synth --arch "$1" --weights f16 -o "$m" >&2 || return 1
    echo "$m"
}

# qe_gpu_ppl_hash BIN MODEL WEIGHTS KV [DEV]: the first 12 hex digits of the
# md5 of a perplexity dump (16 chunks of 512 tokens of wiki.test.raw, 8 a
# batch: prefill matmuls of 4,096 rows), or FAILED when the run fails.
qe_gpu_ppl_hash() {
    local d h=FAILED
    d=$(mktemp)
    "$1" perplexity -q -d "${5:-nvidia}" -m "$2" --weights "$3" --kv "$4" \
        -f "${QEVAL_DATA:-$PWD/.oracle/data}/text/wiki.test.raw" -c 512 --chunks 16 -b 8 \
        --dump "$d" >/dev/null 2>&1 && h=$(md5sum <"$d" | cut -c1-12)
    rm -f "$d"
    echo "$h"
}

# qe_gpu_cuda_ptx IN OUT: NVIDIA OpenCL's PTX (IN, from bench/cl_regs.c's
# CL_REGS_PTX) as PTX the CUDA driver loads (OUT, for bench/ptx_run.c):
# NUL bytes and the metadata section dropped, and the OpenCL registers
# replaced: get_group_id(d) is %envreg<d> + %ctaid (a group offset, 0
# here), the global offset %envreg<3 + d> (0), and get_num_groups(d)
# %envreg<6 + d>; zeroing the latter had made mma_skinny's loop over its
# blocks endless. Status 1 if an %envreg is left.
qe_gpu_cuda_ptx() {
    tr -d '\000' <"$1" | sed -E -e 's/%envreg[0-5]\b/0/g' -e 's/%envreg6\b/%nctaid.x/g' \
        -e 's/%envreg7\b/%nctaid.y/g' -e 's/%envreg8\b/%nctaid.z/g' -e '/^\.metadata_section/,$d' >"$2"
    ! grep -q envreg "$2"
}
