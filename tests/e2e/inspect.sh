# qeval inspect: real files in text and JSON, checked against an independent
# Python reading of the same bytes; then one corrupt copy of a real file per
# rejection class, each of which must exit 3 with exactly one stderr line
# naming the offset of the broken field.
# (sourced by tests/e2e.sh: uses $QEVAL, $QEVAL_DATA, $E2E_TMP, expect_*)

STORIES=$QEVAL_DATA/models/stories260K.gguf
PHI3=$QEVAL_DATA/vocab/ggml-vocab-phi-3.gguf
IDIR=$E2E_TMP/inspect
mkdir -p "$IDIR"

# A small GGUF walker written from the spec, shared by the checks below.
cat >"$IDIR/walk.py" <<'EOF'
import struct
SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def walk(d):
    """Field positions of a GGUF v2/v3 file: kvs and tensor infos."""
    pos = 24
    def u32(p): return struct.unpack_from('<I', d, p)[0]
    def u64(p): return struct.unpack_from('<Q', d, p)[0]
    n_t, n_kv = u64(8), u64(16)
    kvs, tens, align = [], [], 32
    for _ in range(n_kv):
        kl = u64(pos); key = d[pos + 8:pos + 8 + kl].decode()
        kv = {'off': pos, 'key': key, 'type_off': pos + 8 + kl}
        pos = kv['type_off']; t = u32(pos); kv['type'] = t; pos += 4; kv['val_off'] = pos
        if t == 8:
            pos += 8 + u64(pos)
        elif t == 9:
            et = u32(pos); n = u64(pos + 4); kv.update(elem=et, n=n, n_off=pos + 4); pos += 12
            for _ in range(n):
                pos += 8 + u64(pos) if et == 8 else SIZES[et]
        else:
            if key == 'general.alignment': align = u32(pos)
            pos += SIZES[t]
        kvs.append(kv)
    for _ in range(n_t):
        nl = u64(pos); ti = {'off': pos, 'name': d[pos + 8:pos + 8 + nl].decode()}
        pos += 8 + nl; ti['nd_off'] = pos; nd = u32(pos); pos += 4
        ti['ne_off'] = pos; ti['ne'] = [struct.unpack_from('<q', d, pos + 8 * j)[0] for j in range(nd)]
        pos += 8 * nd; ti['type_off'] = pos; ti['type'] = u32(pos); pos += 4
        ti['off_field'] = pos; ti['offset'] = u64(pos); pos += 8
        tens.append(ti)
    data = (pos + align - 1) // align * align
    return {'kvs': kvs, 'tensors': tens, 'data_offset': min(data, len(d)) if not tens else data,
            'align': align}
EOF

expect_exit "inspect --help exits 0" 0 "$QEVAL" inspect --help
expect_match "inspect --help documents the exit codes" "$OUT" "3 the file is not valid GGUF"
expect_exit "inspect without a file is a usage error" 2 "$QEVAL" inspect
expect_exit "inspect with an unknown option is a usage error" 2 "$QEVAL" inspect --frob "$STORIES"
expect_exit "inspect with two files is a usage error" 2 "$QEVAL" inspect "$STORIES" "$PHI3"
expect_exit "inspect of a missing file exits 1 (I/O)" 1 "$QEVAL" inspect "$IDIR/missing.gguf"
expect_lines "missing file: one stderr line" "$ERR" 1
expect_match "missing file: names the file" "$ERR" "^qeval inspect: .*missing.gguf: cannot open"
expect_exit "inspect of a directory exits 1" 1 "$QEVAL" inspect "$IDIR"

# stories260K as text: facts from MANIFEST.md.
expect_exit "inspect stories260K" 0 "$QEVAL" inspect "$STORIES"
expect_match "text: version" "$OUT" "^version: +3$"
expect_match "text: block_count" "$OUT" "llama\.block_count +u32 +5$"
expect_match "text: embedding_length" "$OUT" "llama\.embedding_length +u32 +64$"
expect_match "text: token array summarized" "$OUT" "tokenizer\.ggml\.tokens +array +\[string x 512\] \"<unk>\", \"<s>\", \"</s>\""
expect_match "text: 48 tensors" "$OUT" "^tensors: +48 "
expect_match "text: tensor table row" "$OUT" " 0  token_embd\.weight +f32 +64 x 512 +131072 +0$"
expect_exit "inspect --no-tensors" 0 "$QEVAL" inspect --no-tensors "$STORIES"
if printf '%s' "$OUT" | grep -q "token_embd"; then not_ok "--no-tensors hides the table"; else
    ok "--no-tensors hides the table"; fi

# stories260K as JSON, compared with the Python walk of the same file.
expect_exit "inspect --json stories260K" 0 "$QEVAL" inspect --json "$STORIES"
printf '%s' "$OUT" >"$IDIR/stories.json"
if python3 - "$STORIES" "$IDIR/stories.json" "$IDIR" <<'EOF'; then ok "json: matches an independent reading of stories260K"; else not_ok "json: matches an independent reading of stories260K"; fi
import json, sys
sys.path.insert(0, sys.argv[3]); from walk import walk
d = open(sys.argv[1], 'rb').read(); j = json.load(open(sys.argv[2])); w = walk(d)
assert j['version'] == 3 and j['file_size'] == len(d), j
assert j['data_offset'] == w['data_offset'] and j['alignment'] == w['align'] == 32
assert list(j['metadata']) == [kv['key'] for kv in w['kvs']] and j['n_kv'] == 19
m = j['metadata']
facts = {'llama.block_count': 5, 'llama.embedding_length': 64, 'llama.feed_forward_length': 172,
         'llama.attention.head_count': 8, 'llama.attention.head_count_kv': 4,
         'llama.context_length': 2048, 'tokenizer.ggml.bos_token_id': 1,
         'tokenizer.ggml.eos_token_id': 2}
for k, v in facts.items():
    assert m[k] == {'type': 'u32', 'value': v}, (k, m[k])
assert m['general.architecture']['value'] == 'llama'
tok = m['tokenizer.ggml.tokens']
assert tok['elem_type'] == 'string' and tok['length'] == 512 and tok['truncated'] is True
assert tok['values'][:3] == ['<unk>', '<s>', '</s>'] and len(tok['values']) == 8
assert j['n_tensors'] == 48 == len(j['tensors']) == len(w['tensors'])
for t, ti in zip(j['tensors'], w['tensors']):
    assert t['name'] == ti['name'] and t['dims'] == ti['ne'] and t['offset'] == ti['offset'], t
    n = 1
    for x in ti['ne']: n *= x
    assert t['type'] == 'f32' and t['bytes'] == 4 * n, t
EOF

# phi-3 vocab: no tensors, 32064 tokens, no padding after the metadata.
expect_exit "inspect --json phi-3 vocab" 0 "$QEVAL" inspect --json --no-tensors "$PHI3"
printf '%s' "$OUT" >"$IDIR/phi3.json"
if python3 - "$PHI3" "$IDIR/phi3.json" "$IDIR" <<'EOF'; then ok "json: matches an independent reading of the phi-3 vocab"; else not_ok "json: matches an independent reading of the phi-3 vocab"; fi
import json, sys
sys.path.insert(0, sys.argv[3]); from walk import walk
d = open(sys.argv[1], 'rb').read(); j = json.load(open(sys.argv[2])); w = walk(d)
assert j['n_tensors'] == 0 and 'tensors' not in j
assert j['data_offset'] == len(d) == w['data_offset']
assert list(j['metadata']) == [kv['key'] for kv in w['kvs']]
m = j['metadata']
assert m['tokenizer.ggml.tokens']['length'] == 32064
assert m['tokenizer.ggml.add_bos_token'] == {'type': 'bool', 'value': True}
assert m['general.architecture']['value'] == 'phi3'
EOF

# One corrupt copy per rejection class. Each line of cases.tsv: file, the
# offset the message must name, and a regex for the rule.
python3 - "$STORIES" "$PHI3" "$IDIR" <<'EOF'
import struct, sys
sys.path.insert(0, sys.argv[3]); from walk import walk
S = open(sys.argv[1], 'rb').read(); P = open(sys.argv[2], 'rb').read(); out = sys.argv[3]
ws, wp = walk(S), walk(P)
kv = {k['key']: k for k in ws['kvs']}; pk = {k['key']: k for k in wp['kvs']}
tn = {t['name']: t for t in ws['tensors']}
cases = open(out + '/cases.tsv', 'w')
def case(name, data, off, rule):
    open(f'{out}/{name}.gguf', 'wb').write(bytes(data)); cases.write(f'{name}\t{off}\t{rule}\n')
def patched(src, at, fmt, v):
    b = bytearray(src); struct.pack_into('<' + fmt, b, at, v); return b
U64 = 2**64 - 1
case('empty', b'', 0, 'bad magic')
case('bad-magic', b'GGUX' + S[4:], 0, 'bad magic')
case('version-0', patched(S, 4, 'I', 0), 4, 'version 0')
case('version-1', patched(S, 4, 'I', 1), 4, 'version 1 is not supported')
case('version-99', patched(S, 4, 'I', 99), 4, 'unknown GGUF version 99')
case('big-endian', patched(S, 4, 'I', 0x03000000), 4, r'byte-swapped \(big-endian\) file')
case('tensor-count', patched(S, 8, 'Q', 2**40), 8, 'tensor count .* cannot fit')
case('kv-count', patched(S, 16, 'Q', U64), 16, 'kv count .* cannot fit')
k = kv['general.name']
case('key-length', patched(S, k['off'], 'Q', 2**50), k['off'], 'key length .* exceeds')
case('string-length', patched(S, k['val_off'], 'Q', 2**50), k['val_off'], 'string value length .* exceeds')
case('empty-key', patched(S, k['off'], 'Q', 0), k['off'], 'empty key')
case('nul-in-key', patched(S, k['off'] + 10, 'B', 0), k['off'] + 10, 'NUL byte inside key')
a, b = kv['general.architecture'], kv['tokenizer.ggml.model']   # both 20 bytes long
d = bytearray(S); d[b['off'] + 8:b['off'] + 28] = b'general.architecture'
first, later = (a, b) if a['off'] < b['off'] else (b, a)
case('duplicate-key', d, later['off'], "duplicate key 'general.architecture'")
case('value-type', patched(S, k['type_off'], 'I', 13), k['type_off'], 'invalid value type 13')
t = kv['tokenizer.ggml.scores']
case('nested-array', patched(S, t['val_off'], 'I', 9), t['val_off'], 'array of arrays')
case('array-length', patched(S, t['n_off'], 'Q', 2**40), t['n_off'], 'values of type f32 .* need')
t = kv['tokenizer.ggml.tokens']
case('string-array-length', patched(S, t['n_off'], 'Q', 2**40), t['n_off'], 'array of .* strings .* cannot fit')
b = pk['tokenizer.ggml.add_bos_token']
case('bool-value', patched(P, b['val_off'], 'B', 7), b['val_off'], 'bool value 7')
# general.alignment is as long as llama.block_count (u32 5): rename it.
k = kv['llama.block_count']; d = bytearray(S); d[k['off'] + 8:k['off'] + 25] = b'general.alignment'
case('alignment-5', d, k['val_off'], 'general.alignment 5 is not a power of two')
case('alignment-0', patched(d, k['val_off'], 'I', 0), k['val_off'], 'general.alignment 0 is not a power of two')
case('alignment-type', patched(d, k['type_off'], 'I', 5), k['type_off'], 'general.alignment has type i32, expected u32')
t = tn['output_norm.weight']
case('tensor-name-long', patched(S, t['off'], 'Q', 64), t['off'], 'is 64 bytes \\(the limit is 63\\)')
case('tensor-n-dims', patched(S, t['nd_off'], 'I', 5), t['nd_off'], 'has 5 dimensions')
case('tensor-n-dims-0', patched(S, t['nd_off'], 'I', 0), t['nd_off'], 'has 0 dimensions')
case('tensor-type', patched(S, t['type_off'], 'I', 4), t['type_off'], 'unknown type 4')
t = tn['token_embd.weight']
case('negative-dim', patched(S, t['ne_off'] + 8, 'q', -512), t['ne_off'] + 8, 'dimension 1 is negative')
case('dim-overflow', patched(S, t['ne_off'] + 8, 'q', 2**62), t['ne_off'] + 8, 'element count overflows')
case('size-overflow', patched(S, t['ne_off'], 'q', 2**53 + 2**52), t['ne_off'], 'byte size overflows')
q, kk = tn['blk.0.attn_q.weight'], tn['blk.0.attn_k.weight']
d = bytearray(S); d[kk['off'] + 8 + 11] = ord('q')
case('duplicate-tensor', d, kk['off'], "duplicate tensor name 'blk.0.attn_q.weight'")
t = tn['blk.0.ffn_down.weight']   # ne[0] = 172: not whole Q8_0 blocks
case('row-blocks', patched(S, t['type_off'], 'I', 8), t['ne_off'], "row length 172 is not a multiple of q8_0's block size 32")
t = tn['output.weight']
case('offset-unaligned', patched(S, t['off_field'], 'Q', t['offset'] + 4), t['off_field'], 'is not a multiple of the alignment 32')
case('overlap', patched(S, t['off_field'], 'Q', 0), t['off_field'], "overlaps tensor 'token_embd.weight'")
case('past-end', patched(S, t['off_field'], 'Q', 2**30), t['off_field'], 'runs past the end of the file')
case('offset-overflow', patched(S, t['off_field'], 'Q', 2**64 - 32), t['off_field'], 'overflows')
last = ws['tensors'][-1]
case('truncated', S[:-1], last['off_field'], 'runs past the end of the file')
# Cut at 1000 bytes: 48 tensor infos (33+ bytes each) no longer fit.
case('truncated-counts', S[:1000], 8, 'tensor count 48 cannot fit')
# Cut inside the token array, where the counts still fit.
case('truncated-metadata', S[:5000], None, 'needs .* bytes|exceeds')
EOF

while IFS=$'\t' read -r name off rule; do
    f=$IDIR/$name.gguf
    expect_exit "corrupt $name: exit 3" 3 "$QEVAL" inspect "$f"
    expect_lines "corrupt $name: one stderr line" "$ERR" 1
    [ "$off" = "None" ] && off='[0-9]+'
    expect_match "corrupt $name: names offset and rule" "$ERR" \
        "^qeval inspect: $f: offset $off: .*($rule)"
    expect_exit "corrupt $name --json: exit 3" 3 "$QEVAL" inspect --json "$f"
    [ -z "$OUT" ] && ok "corrupt $name --json: nothing on stdout" ||
        not_ok "corrupt $name --json: nothing on stdout" "$OUT"
done <"$IDIR/cases.tsv"
