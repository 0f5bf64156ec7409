#!/usr/bin/env bash
# The NVIDIA-only kernel builds through clang's OpenCL front end (make test).
#
# kernels/mma.cl and kernels/attn_mma.cl issue tensor-core instructions as
# inline PTX, so the engine builds them only where the capability probe
# finds mma.sync (NVIDIA's OpenCL): PoCL, hence CI, never compiles them, and
# a slip in them used to show only on the GPU machine, at the cost of a
# device session. Here every build the engine makes of them (lib/engine.c:
# need_wfmt's mma_tile / mma_tile_pair / mma_tile_glu, mma_skinny's
# shapes and X reads, mma_wide's splits, build_common's attn_mma; their
# default shapes, the QEVAL_MMA_* shapes a sweep may pick, each weight
# format), the decoder's program with warp shuffles, and the GPU probes'
# kernels in bench/, go through
# `clang -target nvptx64-nvidia-nvcl -fsyntax-only
# -Werror`: syntax, types, the #error guards between options, and the
# operand constraints of the inline asm. The PTX text inside the asm is
# NVIDIA's compiler's to check. tests/kernels_nvptx.h declares the half
# loads and stores clang's header leaves out for this target.
set -u
cd "$(dirname "$0")/.." || exit 1
CLANG=${CLANG:-clang}
T=$(mktemp -d "${TMPDIR:-/tmp}/qeval-kernels-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0

# The sources of each program, in the engine's order, read from the engine
# itself (lib/engine.c: the mma_srcs array; build_common's asrcs for
# attn_mma) so that the two cannot drift apart.
srcs_of() { # ARRAY: the .cl names in lib/engine.c's "ARRAY[] = { ... };"
    sed -n "/ $1\[\] = {/,/};/p" lib/engine.c | grep -o '"[a-z_0-9]*\.cl"' | tr -d '"'
}
for prog in mma:mma_srcs mmatq:mma_kvtq_srcs attn:asrcs; do
    names=$(srcs_of "${prog#*:}")
    [ -n "$names" ] || { echo "not ok - no ${prog#*:} sources found in lib/engine.c"; exit 1; }
    # shellcheck disable=SC2086
    (cd kernels && cat $names) >"$T/${prog%%:*}.cl" || exit 1
done

# build NAME FILE OPTIONS: one program through the front end.
build() {
    # shellcheck disable=SC2086 # OPTIONS are words
    if "$CLANG" -x cl -cl-std=CL1.2 -target nvptx64-nvidia-nvcl -Xclang -finclude-default-header \
        -include tests/kernels_nvptx.h -fsyntax-only -Werror $3 "$2" >"$T/log" 2>&1; then
        pass=$((pass + 1))
        echo "ok - nvptx front end: $1"
    else
        fail=$((fail + 1))
        echo "not ok - nvptx front end: $1 ($3)"
        head -20 "$T/log" | sed 's/^/#   /'
    fi
}

# weight formats (engine_internal.h engine_wfmt) and the X order mma_tile
# wants for each (xh_order: 0 as it is, 1 Q4_0's, 2 Q8_0's)
for wt in 0 1 2 3; do
    xo=0
    [ $wt = 3 ] && xo=1
    [ $wt = 2 ] && xo=2
    base="-DQE_WT=$wt -DQE_NW=256"
    # mma_tile: the default shape (128 rows, 3 stages, 32 outputs a warp)
    # in both work-group orders and its three variants, and the other
    # shapes QEVAL_MMA_TILE allows at their extremes
    for gm in 0 16; do
        for v in "" "-DMT_PAIR=1" "-DMT_GLU=1"; do
            build "mma_tile wt $wt gm $gm $v" "$T/mma.cl" \
                "$base -DMT_BM=128 -DMT_S=3 -DMT_WN=32 -DMT_XO=$xo -DMT_GM=$gm $v"
        done
    done
    # the wgmma builds of f16, Q8_0 and Q4_0 weights (MT_WG: its wgmma
    # steps are PTX comments here, instructions once lib/cl patches the PTX)
    if [ $wt != 0 ]; then
        for gm in 0 16; do
            for v in "" "-DMT_PAIR=1" "-DMT_GLU=1"; do
                build "mma_tile wt $wt gm $gm wgmma $v" "$T/mma.cl" \
                    "$base -DMT_BM=128 -DMT_S=3 -DMT_WN=32 -DMT_XO=$xo -DMT_GM=$gm -DMT_WG=1 $v"
            done
            # the LM head reduced to statistics (f16 only: engine.c lse_of)
            [ $wt = 1 ] && build "mma_tile wt $wt gm $gm wgmma -DMT_LSE=1" "$T/mma.cl" \
                "$base -DMT_BM=128 -DMT_S=3 -DMT_WN=32 -DMT_XO=$xo -DMT_GM=$gm -DMT_WG=1 -DMT_LSE=1"
            # RoPE in Q's and K's epilogue (f16 only: engine.c rope_tile_of),
            # K and V into f16 caches (MT_KV16): pairs of a 64-wide head, of
            # a head that straddles tiles (80, 40 rotated), halves of
            # TinyStories-656K's 16-wide heads and of 128-wide ones
            if [ $wt = 1 ]; then
                for r in "64 64 0" "80 40 0" "16 16 1" "128 64 1"; do
                    read -r hd rot half <<<"$r"
                    for v in "" "-DMT_PAIR=1" "-DMT_PAIR=1 -DMT_KV16=1"; do
                        build "mma_tile wt $wt gm $gm wgmma rope $hd/$rot/$half $v" "$T/mma.cl" \
                            "$base -DMT_BM=128 -DMT_S=3 -DMT_WN=32 -DMT_XO=$xo -DMT_GM=$gm -DMT_WG=1 $v -DMT_ROPE=1 -DMT_RHD=$hd -DMT_RROT=$rot -DMT_RHALF=$half"
                    done
                    # K and V into TurboQuant caches (MT_KVTQ: power-of-two
                    # heads; tq4 / tq4 and tq3 / tq2, with and without fp64)
                    if [ $((hd & (hd - 1))) = 0 ]; then
                        for kv in "4 4 -DQE_FP64" "5 6"; do
                            read -r kk vv fp <<<"$kv"
                            build "mma_tile wt $wt gm $gm wgmma rope $hd/$rot/$half KVTQ $kk/$vv $fp" "$T/mmatq.cl" \
                                "$base -DMT_BM=128 -DMT_S=3 -DMT_WN=32 -DMT_XO=$xo -DMT_GM=$gm -DMT_WG=1 -DMT_PAIR=1 -DMT_ROPE=1 -DMT_RHD=$hd -DMT_RROT=$rot -DMT_RHALF=$half -DMT_KVTQ=1 -DMT_KVK=$kk -DMT_KVV=$vv -DQE_HD=$hd -DQE_SQRT_HD=1.0f $fp"
                        done
                    fi
                done
            fi
        done
    fi
    for sh in "64 2 64" "128 4 64" "64 4 32"; do
        read -r bm s wn <<<"$sh"
        build "mma_tile wt $wt $bm x $wn, $s stages" "$T/mma.cl" \
            "$base -DMT_BM=$bm -DMT_S=$s -DMT_WN=$wn -DMT_XO=$xo -DMT_GM=0"
    done
    # mma_skinny: the default shape and the few-blocks ones (NB, U), each X
    # read (as it is with a branch, MS_XFREE, and for Q8_0 / Q4_0 the
    # one-row MS_X1 build), aligned rows or not, and a multi-tile shape
    for sh in "1 2 4" "1 2 8" "1 1 8" "2 4 2"; do
        read -r mt nb u <<<"$sh"
        build "mma_skinny wt $wt $mt/$nb/$u" "$T/mma.cl" "$base -DMS_MT=$mt -DMS_NB=$nb -DMS_U=$u"
        build "mma_skinny wt $wt $mt/$nb/$u aligned" "$T/mma.cl" \
            "$base -DMS_MT=$mt -DMS_NB=$nb -DMS_U=$u -DMS_XAL"
        build "mma_skinny wt $wt $mt/$nb/$u xfree" "$T/mma.cl" \
            "$base -DMS_MT=$mt -DMS_NB=$nb -DMS_U=$u -DMS_XAL -DMS_XFREE"
        if [ "$mt" = 1 ] && { [ $wt = 2 ] || [ $wt = 3 ]; }; then
            build "mma_skinny wt $wt $mt/$nb/$u one row" "$T/mma.cl" \
                "$base -DMS_MT=$mt -DMS_NB=$nb -DMS_U=$u -DMS_XAL -DMS_X1=8192"
            # Q4_0's few-block build requests its whole row (x1_few_of)
            build "mma_skinny wt $wt $mt/$nb/$u one row, MS_XB 8" "$T/mma.cl" \
                "$base -DMS_MT=$mt -DMS_NB=$nb -DMS_U=$u -DMS_XAL -DMS_X1=8192 -DMS_XB=8"
        fi
    done
    # mma_wide: both splits, aligned or not, and a wider shape
    for sh in "2 2" "4 8" "1 1"; do
        read -r nb u <<<"$sh"
        for split in 1 8; do
            build "mma_wide wt $wt $nb/$u split $split" "$T/mma.cl" \
                "$base -DMW_NB=$nb -DMW_U=$u -DMW_SPLIT=$split"
            build "mma_wide wt $wt $nb/$u split $split aligned" "$T/mma.cl" \
                "$base -DMW_NB=$nb -DMW_U=$u -DMW_SPLIT=$split -DMS_XAL"
        done
    done
done

# attn_mma: every head size it takes (16 .. 128 in 16s: the engine's
# hd % 16 == 0 && hd <= 128), KV formats (kv_format.h: f32 0, f16 1, q8_0 2,
# q4_0 3, tq4 4, tq3 5, tq2 6) in pairs with TurboQuant's rotations where
# the engine asks for them (AM_ROTQ for a TurboQuant K, AM_ROTO for a V:
# power-of-two heads, which TurboQuant needs), also in the f16 build that
# reads decoded TurboQuant rows, fp64 with one (QE_SQRT_HD's value does not
# matter to the front end)
for hd in 16 64 80 128; do
    for kv in "1 1" "2 3" "4 5" "6 1" "0 0" "1 1 1 1" "2 4"; do
        read -r kk vv rq ro <<<"$kv"
        [ -z "$rq" ] && rq=$([ "$kk" -ge 4 ] && echo 1 || echo 0)
        [ -z "$ro" ] && ro=$([ "$vv" -ge 4 ] && echo 1 || echo 0)
        [ $((hd & (hd - 1))) != 0 ] && { rq=0; ro=0; }
        fp=""
        [ "$kk" = 4 ] && fp="-DQE_FP64"
        build "attn_mma hd $hd kv $kk/$vv rot $rq/$ro $fp" "$T/attn.cl" \
            "-DQE_HD=$hd -DQE_SQRT_HD=0x1p+3f $fp -DQE_KVK=$kk -DQE_KVV=$vv -DAM_ROTQ=$rq -DAM_ROTO=$ro"
    done
done

# the decoder's program as NVIDIA gets it under mma (engine_decode.c: ptx.cl
# first, at_tree's warp shuffles by -DQE_SHFL): attn_rows one head a
# work-group and grouped (QE_G 4, the second build), cache formats in pairs
(cd kernels && cat ptx.cl kvfmt.cl qkv.cl decode.cl) >"$T/decode.cl" || exit 1
for kv in "1 1" "2 3" "4 5" "6 1" "0 0"; do
    read -r kk vv <<<"$kv"
    for g in "-DQE_G=1" "-DQE_G=4 -DQE_ATTN_ONLY"; do
        build "decode kv $kk/$vv $g" "$T/decode.cl" \
            "-DQE_HD=64 -DQE_SQRT_HD=0x1p+3f -DQE_AW=64 -DQE_KVK=$kk -DQE_KVV=$vv -DQE_SHFL $g"
    done
done

# the KV store as NVIDIA gets it under mma (engine_kv.c build_kv: ptx.cl
# first, -DQE_SHFL: TurboQuant head vectors of 32 .. 128 held by a warp,
# other sizes and formats the local-memory build), fp64 or not
(cd kernels && cat ptx.cl kvfmt.cl qkv.cl kv.cl) >"$T/kv.cl" || exit 1
for hd in 32 64 128 16 256; do
    for f in 4 5 6 2; do
        for fp in "" "-DQE_FP64"; do
            build "kv_store hd $hd format $f shfl $fp" "$T/kv.cl" \
                "-DQE_HD=$hd -DQE_SQRT_HD=0x1p+3f $fp -DQE_KVF=$f -DTR_WI=256 -DQE_SHFL"
        done
    done
done

# the GPU probes' kernels (bench/limits_probe.cl, bench/stream_probe.cl,
# bench/wgmma_probe.cl, bench/cluster_probe.cl), which their programs build
# after kernels/ptx.cl (and kernels/wgmma.cl):
# inline PTX too, and a slip in them costs a device call just the same
for probe in limits stream; do
    cat kernels/ptx.cl "bench/${probe}_probe.cl" >"$T/$probe.cl" || exit 1
done
cat kernels/ptx.cl kernels/wgmma.cl bench/wgmma_probe.cl >"$T/wgmma.cl" || exit 1
for ch in 1 8; do
    build "bench/limits_probe.cl CH $ch" "$T/limits.cl" "-DCH=$ch"
done
build "bench/limits_probe.cl GW_R 1" "$T/limits.cl" "-DCH=4 -DGW_R=1"
build "bench/stream_probe.cl" "$T/stream.cl" ""
build "bench/wgmma_probe.cl" "$T/wgmma.cl" ""
cat kernels/ptx.cl bench/cluster_probe.cl >"$T/cluster.cl" || exit 1
build "bench/cluster_probe.cl" "$T/cluster.cl" ""
# lib/cl's wgmma probe (kernels/probe.cl after ptx.cl and wgmma.cl)
cat kernels/ptx.cl kernels/wgmma.cl kernels/probe.cl >"$T/probe.cl" || exit 1
build "kernels/probe.cl QE_PROBE_WGMMA" "$T/probe.cl" "-DQE_PROBE_WGMMA"

echo "# nvptx front end: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
