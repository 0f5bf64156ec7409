# shellcheck shell=bash
# `qeval devices`: sourced by tests/e2e.sh (helpers expect_exit/expect_match).
# Builds go to a scratch cache so the user's ~/.cache is left alone.
export QEVAL_CACHE_DIR="$E2E_TMP/cl-cache"
unset QEVAL_DEVICE

expect_exit "devices --help exits 0" 0 "$QEVAL" devices --help
expect_match "devices --help shows usage" "$OUT" "usage: qeval devices"
expect_exit "devices rejects an unknown option" 2 "$QEVAL" devices --frobnicate
expect_match "devices names the bad option" "$ERR" "frobnicate"
expect_exit "devices --device needs a value" 2 "$QEVAL" devices --device

expect_exit "devices exits 0" 0 "$QEVAL" devices
expect_match "devices lists a device row marked as default" "$OUT" '^\* 0 '
expect_match "devices shows probed capabilities" "$OUT" 'half-store +fp16 +subgroups +ptx-shfl +ptx-mma +wgmma'
expect_match "devices shows each device's global memory cache" "$OUT" 'local +cache +CUs'
# The number of device rows equals clinfo's count (independent listing).
if command -v clinfo >/dev/null 2>&1; then
    n_clinfo=$(clinfo -l 2>/dev/null | grep -c 'Device #')
    n_rows=$(printf '%s\n' "$OUT" | sed -n '2,/^$/p' | grep -cE '^[* ] [0-9]+ ')
    if [ "$n_clinfo" -eq "$n_rows" ]; then ok "devices lists as many devices as clinfo"; else
        not_ok "devices lists as many devices as clinfo" "clinfo $n_clinfo, qeval $n_rows"; fi
fi

expect_exit "devices --json exits 0" 0 "$QEVAL" devices --json
printf '%s' "$OUT" > "$E2E_TMP/devices.json"
expect_exit "devices --json parses and is consistent" 0 python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
devs = d["devices"]
assert len(devs) >= 1, "no devices"
assert d["default"] == 0 or d["default"] in [x["index"] for x in devs]
assert sum(1 for x in devs if x["default"]) == 1
for i, x in enumerate(devs):
    assert x["index"] == i
    assert x["name"] and x["platform"]["name"]
    assert x["global_mem"] > 0 and x["max_alloc"] > 0 and x["compute_units"] > 0
    assert isinstance(x["global_cache"], int) and x["global_cache"] >= 0
    assert x["type"] in ("GPU", "CPU", "ACCELERATOR", "OTHER")
    c = x["capabilities"]
    assert c["half_storage"] is True, c
    for k in ("fp16", "subgroups", "ptx_shfl", "ptx_mma", "wgmma"):
        assert isinstance(c[k], bool), k
    if "cl_khr_fp16" not in x["extensions"]:
        assert c["fp16"] is False
' "$E2E_TMP/devices.json"

expect_exit "devices --no-probe --json has null capabilities" 0 "$QEVAL" devices --no-probe --json
expect_match "no-probe capabilities are null" "$OUT" '"capabilities": null'

# Selection: by index, and a choice that matches nothing (list still printed, exit 1).
expect_exit "devices --device 0 exits 0" 0 "$QEVAL" devices --no-probe --device 0
expect_match "devices --device 0 marks device 0" "$OUT" '^\* 0 '
expect_exit "an unmatched QEVAL_DEVICE exits 1" 1 env QEVAL_DEVICE=no-such-device-xyz "$QEVAL" devices --no-probe
expect_match "an unmatched QEVAL_DEVICE still lists devices" "$OUT" '^  0 '
expect_match "an unmatched QEVAL_DEVICE is explained" "$ERR" "QEVAL_DEVICE 'no-such-device-xyz' matches no OpenCL device; devices: 0: "
expect_exit "an out-of-range --device exits 1" 1 "$QEVAL" devices --no-probe --device 4096
expect_match "an out-of-range --device is explained" "$ERR" "no device with that index"

# No OpenCL platform at all: an empty ICD directory (ocl-icd reads OCL_ICD_VENDORS).
mkdir -p "$E2E_TMP/no-icd"
expect_exit "devices without any OpenCL platform exits 1" 1 env OCL_ICD_VENDORS="$E2E_TMP/no-icd" "$QEVAL" devices
expect_match "devices without a platform says so" "$ERR" "no OpenCL platform found"
