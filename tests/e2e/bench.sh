# e2e: qeval bench (llama-bench's pp/tg tests) on PoCL with stories260K, tiny
# settings; every output format parsed back, the database checked with the
# sqlite3 shell and sha256sum.
M=$QEVAL_DATA/models/stories260K.gguf
expect_exit "bench --help" 0 "$QEVAL" bench --help
expect_match "bench --help names --profile" "$OUT" "--profile"
expect_exit "bench without a model is a usage error" 2 "$QEVAL" bench -p 16
expect_exit "bench -p 16,,32 (empty item) exits 2" 2 "$QEVAL" bench -m "$M" -p 16,,32
expect_match "the empty item is named" "$ERR" "n-prompt: empty item"
expect_exit "bench -p abc exits 2" 2 "$QEVAL" bench -m "$M" -p abc
expect_exit "bench -b 0 exits 2" 2 "$QEVAL" bench -m "$M" -p 16 -n 4 -b 0
expect_exit "bench -b 70000 (too large) exits 2" 2 "$QEVAL" bench -m "$M" -p 16 -n 4 -b 70000
expect_match "the batch limit is named" "$ERR" "batch 70000 is outside 1 .. 65536"
expect_exit "bench -p 0 -n 0 (no test) exits 2" 2 "$QEVAL" bench -m "$M" -p 0 -n 0
expect_exit "bench -r 0 exits 2" 2 "$QEVAL" bench -m "$M" -r 0
expect_exit "bench -o xml exits 2" 2 "$QEVAL" bench -m "$M" -o xml
expect_exit "bench --weights q5_k exits 2" 2 "$QEVAL" bench -m "$M" -p 16 -n 4 --weights q5_k
expect_exit "bench --kv q9 exits 2" 2 "$QEVAL" bench -m "$M" -p 16 -n 4 --kv q9
expect_exit "bench on a missing model exits 1" 1 "$QEVAL" bench -m "$E2E_TMP/nope.gguf"
expect_exit "bench --gemm tensor exits 2" 2 "$QEVAL" bench -m "$M" -p 16 -n 4 --gemm tensor
expect_match "the --gemm choices are named" "$ERR" "auto, f32, mma"
if ! "$QEVAL" devices 2>/dev/null | grep -q 'NVIDIA'; then
    expect_exit "bench --gemm mma without tensor cores exits 3" 3 "$QEVAL" bench -m "$M" -p 16 -n 0 -r 1 --gemm mma
    expect_match "the device without mma.sync is named" "$ERR" "no inline-PTX mma.sync"
fi
expect_exit "bench --gemm f32 -o csv" 0 "$QEVAL" bench -m "$M" -p 16 -n 0 -r 1 --gemm f32 -o csv
expect_match "the csv row records gemm f32" "$(printf '%s\n' "$OUT" | python3 -c 'import csv,sys; print(list(csv.DictReader(sys.stdin))[0]["gemm"])')" '^f32$'

expect_exit "bench -p 16 -n 4 -r 2 -b 1,2 (markdown)" 0 "$QEVAL" bench -m "$M" -p 16 -n 4 -r 2 -b 1,2
expect_match "markdown header" "$OUT" '^\| model \| size \| params \| device \| weights \| kv \| gemm \| b \| test \| t/s \|'
rows=$(printf '%s\n' "$OUT" | grep -cE '^\| stories260K \| .* \| file \| f16 \| (f32|mma) \| [12] \| (pp16|tg4) \| [0-9.]+ ± [0-9.]+ \|$')
expect_match "four markdown rows: pp16 and tg4 at b 1 and 2" "$rows" '^4$'

expect_exit "bench -o csv" 0 "$QEVAL" bench -m "$M" -p 16 -n 4 -r 2 -b 1,2 -o csv
printf '%s\n' "$OUT" > "$E2E_TMP/b.csv"
csv_ok=$(python3 - "$E2E_TMP/b.csv" <<'EOF'
import csv, json, math, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ok = len(rows) == 4
for r in rows:
    s = json.loads(r["samples_tps"]); sec = json.loads(r["samples_s"])
    b, n = int(r["n_batch"]), int(r["n_prompt"]) + int(r["n_gen"])
    ok &= len(s) == 2 and int(r["n_tokens"]) == b * n
    ok &= all(abs(t - b * n / x) <= 1e-6 * t for t, x in zip(s, sec))
    ok &= abs(float(r["mean_tps"]) - statistics.mean(s)) <= 1e-4 * statistics.mean(s)
    ok &= abs(float(r["stddev_tps"]) - statistics.stdev(s)) <= 1e-4 * max(1.0, statistics.stdev(s))
ok &= [r["test"] for r in rows] == ["pp16", "tg4", "pp16", "tg4"]
print("yes" if ok else "no")
EOF
)
expect_match "CSV parses: 4 rows, tokens/s = tokens / seconds, mean and sample stddev" "$csv_ok" '^yes$'

expect_exit "bench -o json with weights and kv lists" 0 "$QEVAL" bench -m "$M" -p 16 -n 4 -r 2 --weights file,q8_0 --kv f16,tq4 -o json
tests=$(printf '%s\n' "$OUT" | jq -r '[.[] | "\(.weights) \(.kv_k)/\(.kv_v) \(.test)"] | join(",")')
expect_match "JSON: the cross product in order" "$tests" '^file f16/f16 pp16,file f16/f16 tg4,file tq4/tq4 pp16,file tq4/tq4 tg4,q8_0 f16/f16 pp16,q8_0 f16/f16 tg4,q8_0 tq4/tq4 pp16,q8_0 tq4/tq4 tg4$'
smaller=$(printf '%s\n' "$OUT" | jq '([.[] | select(.weights == "q8_0") | .weight_bytes] | max) < (([.[] | select(.weights == "file") | .weight_bytes] | min) / 3)')
expect_match "q8_0 weights take under a third of the f32 bytes" "$smaller" '^true$'

expect_exit "bench --ppl 1 (nothing to score) exits 2" 2 "$QEVAL" bench -m "$M" -p 0 -n 0 --ppl 1
expect_exit "bench --ppl x exits 2" 2 "$QEVAL" bench -m "$M" --ppl x
expect_exit "bench -p 8 --ppl 16 -n 0 -b 2 -o json" 0 "$QEVAL" bench -m "$M" -p 8 --ppl 16 -n 0 -r 1 -b 2 -o json
ppl=$(printf '%s\n' "$OUT" | jq -r '[.[] | "\(.test) \(.n_tokens) \(.scored // "-") \(if .nll then (.nll > 0) else "-" end)"] | join(",")')
expect_match "JSON: pp8 then ppl16 (32 tokens, 8 scored a sequence, a positive nll)" "$ppl" '^pp8 16 - -,ppl16 32 8 true$'

sha=$(sha256sum "$M" | cut -d' ' -f1)
expect_exit "bench --db --profile" 0 "$QEVAL" bench -m "$M" -p 8 -n 2 -r 2 --db "$E2E_TMP/b.db" --profile
expect_match "profile tables follow the results" "$OUT" 'kernels: tg2, b 1, weights file, kv f16/f16'
expect_match "the profile names the decode attention, 2 steps x 5 layers" "$OUT" '\| attn_rows \| 10\.0 \|'
q=$(sqlite3 "$E2E_TMP/b.db" "SELECT count(*), sum(model_sha256 = '$sha'), sum(synthetic), sum(json_array_length(samples_tps) = 2), sum(profiled), min(build_commit <> '') FROM bench")
expect_match "two bench rows with the file's sha256, real, 2 samples, profiled" "$q" '^2\|2\|0\|2\|2\|1$'
k=$(sqlite3 "$E2E_TMP/b.db" "SELECT count(DISTINCT kernel) > 5, sum(kernel = 'matmul') FROM bench_kernels")
expect_match "kernel rows stored per test" "$k" '^1\|2$'
expect_exit "a second run adds rows to the same database" 0 "$QEVAL" bench -m "$M" -p 8 -n 0 -r 1 --db "$E2E_TMP/b.db"
expect_match "three rows now" "$(sqlite3 "$E2E_TMP/b.db" 'SELECT count(*) FROM bench')" '^3$'

# A synthetic model (qeval synth writes qeval.synth.arch) is marked as such.
expect_exit "synth a stories260k-shaped model" 0 "$QEVAL" synth --arch stories260k -o "$E2E_TMP/synth.gguf"
expect_exit "bench a synthetic model into the database" 0 "$QEVAL" bench -m "$E2E_TMP/synth.gguf" -p 8 -n 2 -r 1 --db "$E2E_TMP/s.db"
expect_match "markdown marks it synthetic" "$OUT" '^\| [^|]* \(synthetic\) \|'
q=$(sqlite3 "$E2E_TMP/s.db" "SELECT count(*), sum(synthetic), min(synth_arch) FROM bench")
expect_match "rows say synthetic, with the architecture" "$q" '^2\|2\|stories260k$'
