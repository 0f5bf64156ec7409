# qeval synth: the architecture table (and its copy bench/archs.json), the
# llama-3.2-1b plan against the published shapes, a tiny model written,
# inspected (its tensor table equals the plan), tokenized and loaded; the
# weight formats equal what `qeval quantize` makes of the f32 model (quantize
# is checked against a Python port of ggml in quantize.sh); determinism; then
# usage errors (exit 2) and unwritable outputs (exit 1).
# (sourced by tests/e2e.sh: uses $QEVAL, $E2E_TMP, expect_*)

SDIR=$E2E_TMP/synth
mkdir -p "$SDIR"
ARCHS_JSON=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/bench/archs.json

expect_exit "synth --help exits 0" 0 "$QEVAL" synth --help
expect_match "synth --help names the architectures" "$OUT" "llama-3.2-1b, qwen2.5-0.5b, smollm2-135m"

expect_exit "synth --list" 0 "$QEVAL" synth --list
expect_match "--list: llama-3.2-1b row" "$OUT" "^llama-3.2-1b +2048 +16 +32 +8 +64 +8192 +128256 +131072 +500000 +yes +1235814400$"
expect_match "--list: smollm2-135m (134,515,008 published)" "$OUT" "^smollm2-135m .* 134515008$"
expect_exit "synth --list --json" 0 "$QEVAL" synth --list --json
printf '%s\n' "$OUT" >"$SDIR/archs.json"
if python3 - "$SDIR/archs.json" "$ARCHS_JSON" >"$SDIR/py.out" 2>&1 <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a == b, "qeval synth --list --json differs from bench/archs.json:\n%s\n%s" % (a, b)
EOF
then ok "--list --json equals bench/archs.json"; else
    not_ok "--list --json equals bench/archs.json" "$(tail -3 "$SDIR/py.out")"; fi

# The llama-3.2-1b plan: 2.5 GB never written. Shapes from the published
# config (hidden 2048, 32 x 64 query / 8 x 64 kv heads, FFN 8192, vocab 128256).
expect_exit "synth --plan llama-3.2-1b" 0 "$QEVAL" synth --arch llama-3.2-1b --plan
PLAN=$OUT
expect_match "plan: 1,235,814,400 parameters" "$PLAN" "^params: +1235814400$"
expect_match "plan: 147 tensors" "$PLAN" "^tensors: +147 "
expect_match "plan: embedding 2048 x 128256" "$PLAN" " token_embd\.weight +f16 +2048 x 128256 +525336576$"
expect_match "plan: q 2048 x 2048" "$PLAN" " blk\.15\.attn_q\.weight +f16 +2048 x 2048 +8388608$"
expect_match "plan: k 2048 x 512" "$PLAN" " blk\.15\.attn_k\.weight +f16 +2048 x 512 +2097152$"
expect_match "plan: down 8192 x 2048" "$PLAN" " blk\.15\.ffn_down\.weight +f16 +8192 x 2048 +33554432$"
expect_match "plan: rope_freqs 32" "$PLAN" " rope_freqs\.weight +f32 +32 +128$"
if printf '%s\n' "$PLAN" | grep -Eq " output\.weight "; then not_ok "plan: tied, no output.weight"; else
    ok "plan: tied, no output.weight"; fi
if [ -e "$SDIR/never.gguf" ] || ls "$SDIR" | grep -q tmp; then not_ok "plan writes nothing"; else
    ok "plan writes nothing"; fi
expect_exit "synth --plan --json" 0 "$QEVAL" synth --arch qwen2.5-0.5b --weights q4_0 --plan --json
if printf '%s' "$OUT" | python3 -c '
import json, sys
p = json.load(sys.stdin)
assert p["n_params"] == 494032768 - 24 * (896 + 128 + 128), p["n_params"]
assert p["n_tensors"] == len(p["tensors"]) == 2 + 9 * 24
t = {x["name"]: x for x in p["tensors"]}
assert t["token_embd.weight"]["type"] == "q8_0" and t["token_embd.weight"]["dims"] == [896, 151936]
assert t["blk.0.attn_k.weight"]["dims"] == [896, 128] and t["blk.0.attn_k.weight"]["type"] == "q4_0"
assert sum(x["bytes"] for x in p["tensors"]) == p["data_bytes"] < p["file_bytes"]
' 2>"$SDIR/py.out"; then ok "plan --json: qwen2.5-0.5b shapes and types"; else
    not_ok "plan --json: qwen2.5-0.5b shapes and types" "$(tail -3 "$SDIR/py.out")"; fi

# A tiny model: written, inspected, tokenized.
TINY=(--arch stories260k --dim 32 --heads 4 --kv-heads 2 --layers 2 --vocab 600)
expect_exit "synth a tiny model" 0 "$QEVAL" synth "${TINY[@]}" --weights q8_0 -o "$SDIR/tiny.gguf"
expect_match "synth: summary line" "$OUT" "tiny\.gguf: synthetic stories260k:dim=32,layers=2,heads=4,kv_heads=2,vocab=600, q8_0, 20 tensors"
expect_exit "synth --plan of the tiny model" 0 "$QEVAL" synth "${TINY[@]}" --weights q8_0 --plan
TPLAN=$OUT
expect_exit "inspect the tiny model" 0 "$QEVAL" inspect "$SDIR/tiny.gguf"
INSP=$OUT
expect_match "inspect: general.name" "$INSP" 'general\.name +string "synthetic stories260k:dim=32,layers=2,heads=4,kv_heads=2,vocab=600"'
expect_match "inspect: seed recorded" "$INSP" "qeval\.synth\.seed +u64 +20240917$"
expect_match "inspect: head dim 32 / 4" "$INSP" "llama\.attention\.key_length +u32 +8$"
expect_match "inspect: rows of 172 are f16 under q8_0" "$INSP" "blk\.1\.ffn_down\.weight +f16 +172 x 32 "
expect_match "inspect: file type 7" "$INSP" "general\.file_type +u32 +7$"
# Tensor rows: '#  name  type  dims  bytes [offset]' -> name type dims bytes.
tensor_rows() { awk '/^ +[0-9]+  /{ t=$3; d=$4; for (i=5; $i=="x"; i+=2) d=d"x"$(i+1); print $2, t, d, $i }'; }
printf '%s\n' "$TPLAN" | tensor_rows >"$SDIR/plan.rows"
printf '%s\n' "$INSP" | tensor_rows >"$SDIR/insp.rows"
if [ -s "$SDIR/plan.rows" ] && cmp -s "$SDIR/plan.rows" "$SDIR/insp.rows"; then
    ok "inspect's tensor table equals the plan"; else
    not_ok "inspect's tensor table equals the plan" "$(diff "$SDIR/plan.rows" "$SDIR/insp.rows" | head -5)"; fi
psize=$(printf '%s\n' "$TPLAN" | awk '/^file size:/{print $3}')
isize=$(printf '%s\n' "$INSP" | awk '/^file size:/{print $3}')
if [ -n "$psize" ] && [ "$psize" = "$isize" ] && [ "$psize" = "$(wc -c <"$SDIR/tiny.gguf")" ]; then
    ok "plan's file size is the written size"; else not_ok "plan's file size is the written size" "$psize $isize"; fi

expect_exit "tokenize with the tiny model" 0 "$QEVAL" tokenize --model "$SDIR/tiny.gguf" --text "a b c" --ids
expect_match "tokenize: BOS then the pieces 'a', 'b', 'c' with the space mark" "$OUT" "^1 354 355 356$"
expect_exit "tokenize a sentence" 0 "$QEVAL" tokenize --model "$SDIR/tiny.gguf" --text "Hello, world!" --ids
IDS=$OUT
expect_exit "detokenize it back" 0 "$QEVAL" detokenize --model "$SDIR/tiny.gguf" --ids "$IDS"
expect_match "detokenize: the text comes back" "$OUT" "^Hello, world!$"

# Weight formats: synth --weights T is what quantize makes of the f32 model.
expect_exit "synth the tiny model in f32" 0 "$QEVAL" synth "${TINY[@]}" --weights f32 -o "$SDIR/t32.gguf"
for w in f16 q8_0 q4_0; do
    "$QEVAL" synth "${TINY[@]}" --weights "$w" -o "$SDIR/t-$w.gguf" >/dev/null 2>&1
    "$QEVAL" quantize "$SDIR/t32.gguf" "$SDIR/q-$w.gguf" --type "$w" >/dev/null 2>&1
    if cmp -s "$SDIR/t-$w.gguf" "$SDIR/q-$w.gguf"; then ok "synth --weights $w equals quantize of the f32 model"; else
        not_ok "synth --weights $w equals quantize of the f32 model"; fi
done

# Determinism.
"$QEVAL" synth "${TINY[@]}" --threads 1 -o "$SDIR/d1.gguf" >/dev/null 2>&1
"$QEVAL" synth "${TINY[@]}" --threads 7 -o "$SDIR/d7.gguf" >/dev/null 2>&1
"$QEVAL" synth "${TINY[@]}" --seed 5 -o "$SDIR/s5.gguf" >/dev/null 2>&1
if [ -s "$SDIR/d1.gguf" ] && cmp -s "$SDIR/d1.gguf" "$SDIR/d7.gguf"; then ok "synth: same bytes for 1 and 7 threads"; else
    not_ok "synth: same bytes for 1 and 7 threads"; fi
if cmp -s "$SDIR/d1.gguf" "$SDIR/s5.gguf"; then not_ok "synth: another seed, other bytes"; else
    ok "synth: another seed, other bytes"; fi
expect_exit "synth --seed=VALUE form" 0 "$QEVAL" synth "${TINY[@]}" --seed=5 --output="$SDIR/s5b.gguf"
if cmp -s "$SDIR/s5.gguf" "$SDIR/s5b.gguf"; then ok "synth: --opt=value equals --opt value"; else
    not_ok "synth: --opt=value equals --opt value"; fi

# Usage errors: exit 2, nothing written.
expect_exit "synth without arguments is a usage error" 2 "$QEVAL" synth
expect_exit "synth an unknown architecture" 2 "$QEVAL" synth --arch llama-9000 -o "$SDIR/bad.gguf"
expect_match "unknown architecture: the known ones are listed" "$ERR" "known: llama-3.2-1b, qwen2.5-0.5b, smollm2-135m, stories260k"
expect_exit "synth: heads not dividing dim" 2 "$QEVAL" synth --arch stories260k --heads 5 -o "$SDIR/bad.gguf"
expect_match "heads not dividing dim: explained" "$ERR" "5 heads do not divide dim 64"
expect_exit "synth: kv heads not dividing heads" 2 "$QEVAL" synth --arch stories260k --kv-heads 3 -o "$SDIR/bad.gguf"
expect_match "kv heads: explained" "$ERR" "3 kv heads do not divide 8 heads"
expect_exit "synth: odd head dim" 2 "$QEVAL" synth --arch stories260k --head-dim 7 -o "$SDIR/bad.gguf"
expect_match "odd head dim: explained" "$ERR" "head dim 7 is odd"
expect_exit "synth: dim beyond qeval's limits" 2 "$QEVAL" synth --arch stories260k --dim 2097152 -o "$SDIR/bad.gguf"
expect_match "dim beyond limits: explained" "$ERR" "dim 2097152 is out of range"
expect_exit "synth: a size that overflows int32" 2 "$QEVAL" synth --arch stories260k --vocab 99999999999 -o "$SDIR/bad.gguf"
expect_match "overflowing size: explained" "$ERR" "--vocab '99999999999': expected an integer"
expect_exit "synth: heads x head dim too large" 2 "$QEVAL" synth --arch stories260k --heads 4096 --kv-heads 1 --head-dim 512 -o "$SDIR/bad.gguf"
expect_exit "synth: vocabulary too small for the byte tokens" 2 "$QEVAL" synth --arch stories260k --vocab 100 -o "$SDIR/bad.gguf"
expect_exit "synth --weights q4_1" 2 "$QEVAL" synth --arch stories260k --weights q4_1 -o "$SDIR/bad.gguf"
expect_exit "synth without -o" 2 "$QEVAL" synth --arch stories260k
expect_exit "synth --plan with -o" 2 "$QEVAL" synth --arch stories260k --plan -o "$SDIR/bad.gguf"
expect_exit "synth --json without --plan" 2 "$QEVAL" synth --arch stories260k --json -o "$SDIR/bad.gguf"
expect_exit "synth with an unknown option" 2 "$QEVAL" synth --arch stories260k --frob -o "$SDIR/bad.gguf"
expect_exit "synth --threads 0" 2 "$QEVAL" synth --arch stories260k --threads 0 -o "$SDIR/bad.gguf"
expect_exit "synth --seed -1" 2 "$QEVAL" synth --arch stories260k --seed -1 -o "$SDIR/bad.gguf"
if [ -e "$SDIR/bad.gguf" ]; then not_ok "usage errors write nothing"; else ok "usage errors write nothing"; fi

# Runtime failures: exit 1.
expect_exit "synth into a missing directory exits 1" 1 "$QEVAL" synth --arch stories260k -o "$SDIR/no/such/dir/x.gguf"
expect_match "unwritable output: names the path" "$ERR" "no/such/dir/x\.gguf"
expect_exit "synth onto a directory exits 1" 1 "$QEVAL" synth --arch stories260k -o "$SDIR"

# bench/torch_peer.py (runs on the GPU machine) builds its Hugging Face
# config from bench/archs.json: it must compile here, and its --print-config
# (no torch needed) must agree with qeval synth's plan: every table entry,
# and an override with the head-dim rule.
PEER=$(dirname "$ARCHS_JSON")/torch_peer.py
if python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$PEER" 2>"$SDIR/py.out"; then
    ok "torch_peer.py compiles"; else not_ok "torch_peer.py compiles" "$(tail -3 "$SDIR/py.out")"; fi
for args in "--arch llama-3.2-1b" "--arch qwen2.5-0.5b" "--arch smollm2-135m" "--arch stories260k" \
            "--arch llama-3.2-1b --dim 512 --heads 4 --kv-heads 2 --layers 3 --untied"; do
    # shellcheck disable=SC2086
    "$QEVAL" synth $args --plan --json >"$SDIR/plan.json" 2>&1
    # shellcheck disable=SC2086
    if python3 "$PEER" $args --print-config >"$SDIR/peer.json" 2>"$SDIR/py.out" &&
        python3 - "$SDIR/plan.json" "$SDIR/peer.json" >>"$SDIR/py.out" 2>&1 <<'PY'
import json, sys
plan, peer = (json.load(open(p)) for p in sys.argv[1:3])
assert plan["config"] == peer["config"], (plan["config"], peer["config"])
assert plan["arch"] == peer["arch"] and plan["n_params"] == peer["n_params"], (plan["arch"], peer["arch"])
c, hf = peer["config"], peer["hf_v5"]
assert (hf["hidden_size"], hf["num_hidden_layers"], hf["num_attention_heads"], hf["num_key_value_heads"],
        hf["head_dim"], hf["intermediate_size"], hf["vocab_size"], hf["tie_word_embeddings"]) == \
       (c["dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"], c["head_dim"], c["n_ff"], c["n_vocab"], c["tied"])
assert hf["rope_parameters"]["rope_theta"] == peer["hf_v4"]["rope_theta"] == c["rope_base"]
assert (hf["rope_parameters"]["rope_type"] == "llama3") == (c["rope_scaling"] is not None)
PY
    then ok "torch_peer --print-config agrees with synth --plan: $args"; else
        not_ok "torch_peer --print-config agrees with synth --plan: $args" "$(tail -3 "$SDIR/py.out")"; fi
done
