# qeval quantize: stories260K to q8_0 / q4_0 / f16, the result read back by
# qeval inspect, and every tensor's bytes compared with a pure-Python
# re-implementation of ggml's quantize_row_q8_0_ref / q4_0_ref (float32
# arithmetic emulated exactly through struct); then usage errors (exit 2),
# invalid inputs (exit 3) and unwritable outputs (exit 1).
# (sourced by tests/e2e.sh: uses $QEVAL, $QEVAL_DATA, $E2E_TMP, expect_*)

STORIES=$QEVAL_DATA/models/stories260K.gguf
QDIR=$E2E_TMP/quantize
mkdir -p "$QDIR"

expect_exit "quantize --help exits 0" 0 "$QEVAL" quantize --help
expect_match "quantize --help names the types" "$OUT" "f32, f16, q8_0 or q4_0"

for t in q8_0 q4_0 f16; do
    expect_exit "quantize stories260K to $t" 0 "$QEVAL" quantize "$STORIES" "$QDIR/s-$t.gguf" --type "$t"
    expect_match "quantize $t: summary names the output" "$OUT" "s-$t\.gguf: $t, weights"
done
expect_exit "quantize with --type=VALUE" 0 "$QEVAL" quantize --type=q8_0 "$STORIES" "$QDIR/s-q8_0b.gguf"
if cmp -s "$QDIR/s-q8_0.gguf" "$QDIR/s-q8_0b.gguf"; then ok "quantize is deterministic"; else
    not_ok "quantize is deterministic"; fi

expect_exit "inspect the q4_0 file" 0 "$QEVAL" inspect "$QDIR/s-q4_0.gguf"
expect_match "q4_0: file_type 2 (MOSTLY_Q4_0)" "$OUT" "general\.file_type +u32 +2$"
expect_match "q4_0: quantization_version 2" "$OUT" "general\.quantization_version +u32 +2$"
expect_match "q4_0: layer matrices are q4_0" "$OUT" "blk\.0\.attn_q\.weight +q4_0 +64 x 64 "
expect_match "q4_0: output is q8_0" "$OUT" "output\.weight +q8_0 +64 x 512 "
expect_match "q4_0: tied embedding follows the output" "$OUT" "token_embd\.weight +q8_0 +64 x 512 "
expect_match "q4_0: rows of 172 fall back to f16" "$OUT" "blk\.4\.ffn_down\.weight +f16 +172 x 64 "
expect_match "q4_0: norms stay f32" "$OUT" "blk\.4\.ffn_norm\.weight +f32 +64 "
expect_match "q4_0: all 48 tensors" "$OUT" "^tensors: +48 "
expect_exit "inspect the q8_0 file" 0 "$QEVAL" inspect "$QDIR/s-q8_0.gguf"
expect_match "q8_0: file_type 7 (MOSTLY_Q8_0)" "$OUT" "general\.file_type +u32 +7$"
expect_match "q8_0: layer matrices are q8_0" "$OUT" "blk\.3\.ffn_up\.weight +q8_0 +64 x 172 "
expect_exit "inspect the f16 file" 0 "$QEVAL" inspect "$QDIR/s-f16.gguf"
expect_match "f16: file_type 1 (MOSTLY_F16)" "$OUT" "general\.file_type +u32 +1$"
expect_match "f16: matrices are f16" "$OUT" "blk\.0\.attn_k\.weight +f16 +64 x 32 "
expect_exit "a quantized file quantizes again" 0 "$QEVAL" quantize "$QDIR/s-q4_0.gguf" "$QDIR/s-q4_0-again.gguf" --type q4_0

cat >"$QDIR/ggml_ref.py" <<'EOF'
"""Independent check of qeval quantize: ggml's reference quantizers in
Python, float32 emulated exactly (each +,-,*,/ of float32 values computed in
double and rounded once to float32 is the correctly rounded float32 result)."""
import math, struct, sys

def f32(x): return struct.unpack('<f', struct.pack('<f', x))[0]
def f16_bytes(x): return struct.pack('<e', x)

def walk(path):
    d = open(path, 'rb').read()
    u32 = lambda p: struct.unpack_from('<I', d, p)[0]
    u64 = lambda p: struct.unpack_from('<Q', d, p)[0]
    size = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    pos, align, kv = 24, 32, {}
    for _ in range(u64(16)):
        kl = u64(pos); key = d[pos + 8:pos + 8 + kl].decode(); pos += 8 + kl
        t = u32(pos); pos += 4
        if t == 8: pos += 8 + u64(pos)
        elif t == 9:
            et, n = u32(pos), u64(pos + 4); pos += 12
            for _ in range(n): pos += 8 + u64(pos) if et == 8 else size[et]
        else:
            if t == 4: kv[key] = u32(pos)
            pos += size[t]
    align = kv.get('general.alignment', 32)
    tens = []
    for _ in range(u64(8)):
        nl = u64(pos); name = d[pos + 8:pos + 8 + nl].decode(); pos += 8 + nl
        nd = u32(pos); ne = list(struct.unpack_from('<%dq' % nd, d, pos + 4)); pos += 4 + 8 * nd
        typ, off = u32(pos), u64(pos + 4); pos += 12
        tens.append((name, ne, typ, off))
    base = (pos + align - 1) // align * align
    return d, base, kv, tens

def q8_0(x):
    out = bytearray()
    for b in range(0, len(x), 32):
        blk = x[b:b + 32]
        amax = max(abs(v) for v in blk)
        d = f32(amax / 127); i = f32(1 / d) if d else 0.0
        out += f16_bytes(d)
        for v in blk:
            p = f32(v * i)
            q = math.floor(abs(p) + 0.5) * (1 if p >= 0 else -1)  # roundf
            out += struct.pack('<b', q)
    return bytes(out)

def q4_0(x):
    out = bytearray()
    for b in range(0, len(x), 32):
        blk = x[b:b + 32]
        amax, mx = 0.0, 0.0
        for v in blk:
            if amax < abs(v): amax, mx = abs(v), v
        d = f32(mx / -8); i = f32(1 / d) if d else 0.0
        out += f16_bytes(d)
        q = [min(15, int(f32(f32(v * i) + 8.5))) for v in blk]
        out += bytes(q[j] | q[j + 16] << 4 for j in range(16))
    return bytes(out)

def f16(x): return b''.join(f16_bytes(v) for v in x)

src, out, want = sys.argv[1], sys.argv[2], {'q8_0': 8, 'q4_0': 2, 'f16': 1}[sys.argv[3]]
ds, bs, _, ts = walk(src)
do, bo, kv, to = walk(out)
assert kv['general.file_type'] == {8: 7, 2: 2, 1: 1}[want], kv
assert [t[0] for t in ts] == [t[0] for t in to]
enc = {8: (q8_0, 34, 32), 2: (q4_0, 18, 32), 1: (f16, 2, 1), 0: (None, 4, 1)}
for (name, ne, typ, off), (_, ne2, typ2, off2) in zip(ts, to):
    assert typ == 0 and ne == ne2, name
    n = 1
    for v in ne: n *= v
    x = struct.unpack_from('<%df' % n, ds, bs + off)
    # The rule of qeval quantize --help: 1-D unchanged; output (and the tied
    # embedding) q8_0 under q4_0; rows that are not whole 32-blocks f16.
    if len(ne) == 1: t = 0
    elif want == 2 and name in ('output.weight', 'token_embd.weight'): t = 8
    else: t = want
    if t in (8, 2) and ne[0] % 32: t = 1
    assert typ2 == t, (name, typ2, t)
    fn, bb, bl = enc[t]
    got = do[bo + off2:bo + off2 + n // bl * bb]
    exp = fn(x) if fn else ds[bs + off:bs + off + 4 * n]
    assert got == exp, name
print('%d tensors match' % len(ts))
EOF
for t in q8_0 q4_0 f16; do
    if python3 "$QDIR/ggml_ref.py" "$STORIES" "$QDIR/s-$t.gguf" "$t" >"$QDIR/py.out" 2>&1; then
        ok "$t blocks equal a Python port of ggml's reference quantizer"
    else
        not_ok "$t blocks equal a Python port of ggml's reference quantizer" "$(tail -3 "$QDIR/py.out")"
    fi
done

# Usage errors.
expect_exit "quantize without arguments is a usage error" 2 "$QEVAL" quantize
expect_exit "quantize without --type is a usage error" 2 "$QEVAL" quantize "$STORIES" "$QDIR/x.gguf"
expect_match "missing --type is explained" "$ERR" "--type is required"
expect_exit "quantize --type q4_1 is a usage error" 2 "$QEVAL" quantize "$STORIES" "$QDIR/x.gguf" --type q4_1
expect_match "unsupported type is named" "$ERR" "q4_1"
expect_exit "quantize --type without value is a usage error" 2 "$QEVAL" quantize "$STORIES" "$QDIR/x.gguf" --type
expect_exit "quantize with an unknown option is a usage error" 2 "$QEVAL" quantize "$STORIES" "$QDIR/x.gguf" --type q8_0 --frob
expect_exit "quantize with three files is a usage error" 2 "$QEVAL" quantize "$STORIES" "$QDIR/x.gguf" "$QDIR/y.gguf" --type q8_0
expect_exit "quantize with one file is a usage error" 2 "$QEVAL" quantize "$STORIES" --type q8_0

# Invalid inputs: exit 3, one line, nothing written.
head -c 5000 "$STORIES" >"$QDIR/truncated.gguf"
expect_exit "quantize a truncated GGUF exits 3" 3 "$QEVAL" quantize "$QDIR/truncated.gguf" "$QDIR/bad.gguf" --type q8_0
expect_lines "truncated input: one stderr line" "$ERR" 1
expect_match "truncated input: names the file" "$ERR" "^qeval quantize: .*truncated\.gguf"
printf 'not a gguf file at all, just text\n' >"$QDIR/text.gguf"
expect_exit "quantize a non-GGUF file exits 3" 3 "$QEVAL" quantize "$QDIR/text.gguf" "$QDIR/bad.gguf" --type q4_0
expect_exit "quantize a vocabulary-only GGUF exits 3" 3 "$QEVAL" quantize "$QEVAL_DATA/vocab/ggml-vocab-phi-3.gguf" "$QDIR/bad.gguf" --type q4_0
if [ -e "$QDIR/bad.gguf" ]; then not_ok "invalid inputs write nothing"; else ok "invalid inputs write nothing"; fi

# Runtime failures: exit 1.
expect_exit "quantize a missing file exits 1" 1 "$QEVAL" quantize "$QDIR/missing.gguf" "$QDIR/bad.gguf" --type q8_0
expect_exit "quantize into a missing directory exits 1" 1 "$QEVAL" quantize "$STORIES" "$QDIR/no/such/dir/out.gguf" --type q8_0
expect_match "unwritable output: names the path" "$ERR" "no/such/dir/out\.gguf"
