/* synth.c - `qeval synth`: write a synthetic Llama GGUF model with the exact
 * tensor shapes of a named architecture (lib/synth.h), list the
 * architectures, or print the tensor plan without writing anything.
 *
 * Threading: the command is single-threaded; qe_synth_write runs its own
 * generator threads.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "dtype.h"
#include "synth.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qeval synth --arch NAME [OPTIONS] -o OUT.gguf\n"
            "       qeval synth --arch NAME [OPTIONS] --plan [--json]\n"
            "       qeval synth --list [--json]\n"
            "\n"
            "Writes a Llama-architecture GGUF model with the exact tensor shapes of a real\n"
            "model and deterministic pseudo-random weights of realistic scale, for speed\n"
            "measurements where real weights cannot be carried. qeval and llama.cpp load it\n"
            "like a converted checkpoint; its SentencePiece-style vocabulary has the real\n"
            "size. The file is streamed to disk (memory stays small for any size) and is the\n"
            "same byte for byte for the same options, whatever the thread count.\n"
            "\n"
            "  --arch NAME       llama-3.2-1b, qwen2.5-0.5b, smollm2-135m, stories260k\n"
            "                    (--list shows their shapes)\n"
            "  --weights TYPE    f32, f16 (default), q8_0 or q4_0: matrices get TYPE as\n"
            "                    `qeval quantize` would give it (norms f32; under q4_0 the\n"
            "                    output matrix / tied embedding q8_0; rows that are not\n"
            "                    whole 32-blocks f16)\n"
            "  --dim N --layers N --heads N --kv-heads N --head-dim N --ffn N --vocab N\n"
            "  --ctx N           override the architecture's sizes; changing --dim or\n"
            "                    --heads without --head-dim makes head dim = dim / heads.\n"
            "                    The label (general.name, qeval.synth.arch) lists overrides:\n"
            "                    \"stories260k:dim=128,layers=2\"\n"
            "  --untied          write a separate output.weight instead of tying it to the\n"
            "                    embedding\n"
            "  --family F        llama (default), qwen2 (adds Q/K/V biases) or gemma3 (q/k\n"
            "                    norms, post norms, GELU, sliding window): the GGUF\n"
            "                    architecture written; not with llama3 RoPE scaling\n"
            "  --window N        gemma3 sliding window (default 512; 0 = none)\n"
            "  --seed S          64-bit seed (default %u), recorded as qeval.synth.seed\n"
            "  --threads N       generator threads (default: QEVAL_THREADS, else one per CPU\n"
            "                    this process may use, at most 64)\n"
            "  -o, --output F    the file to write (atomically)\n"
            "  --plan            print the tensor plan (names, types, dims, bytes; totals\n"
            "                    and the exact file size) and write nothing\n"
            "  --list            print the architecture table\n"
            "  --json            with --plan or --list: one JSON object (--list --json is\n"
            "                    the format of bench/archs.json)\n"
            "  --help            this text\n"
            "\n"
            "exit: 0 ok; 1 the output cannot be written; 2 usage (unknown architecture,\n"
            "impossible shapes: heads not dividing dim, kv heads not dividing heads, an odd\n"
            "head dim, sizes beyond qeval's limits).\n",
            QE_SYNTH_DEFAULT_SEED);
}

/* A decimal integer in lo..hi. */
static int parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static json_t *config_json(const qe_synth_config *c)
{
    json_t *o = json_object(), *rs = json_null();
    if (c->rope_factor != 0.0)
        rs = json_pack("{s:s, s:f, s:f, s:f, s:i}", "type", "llama3", "factor", c->rope_factor,
                       "low_freq_factor", c->rope_low_freq, "high_freq_factor", c->rope_high_freq,
                       "original_max_position_embeddings", (json_int_t)c->rope_orig_ctx);
    if (!o || !rs ||
        json_object_set_new(o, "dim", json_integer(c->dim)) ||
        json_object_set_new(o, "n_layers", json_integer(c->n_layers)) ||
        json_object_set_new(o, "n_heads", json_integer(c->n_heads)) ||
        json_object_set_new(o, "n_kv_heads", json_integer(c->n_kv_heads)) ||
        json_object_set_new(o, "head_dim",
                            json_integer(c->head_dim ? c->head_dim : c->dim / c->n_heads)) ||
        json_object_set_new(o, "n_ff", json_integer(c->n_ff)) ||
        json_object_set_new(o, "n_vocab", json_integer(c->n_vocab)) ||
        json_object_set_new(o, "n_ctx", json_integer(c->n_ctx)) ||
        json_object_set_new(o, "rope_base", json_real(c->rope_base)) ||
        json_object_set_new(o, "rms_eps", json_real(c->rms_eps)) ||
        json_object_set_new(o, "tied", json_boolean(c->tied)) ||
        json_object_set_new(o, "rope_scaling", rs) ||
        json_object_set_new(o, "note", json_string(c->note ? c->note : ""))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int print_json(json_t *root)
{
    int rc = QE_EXIT_OK;
    if (!root || json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) != 0) {
        fprintf(stderr, "qeval synth: cannot build or write the JSON output\n");
        rc = QE_EXIT_FAIL;
    } else {
        printf("\n");
    }
    json_decref(root);
    return rc;
}

static int list(int json)
{
    if (json) {
        json_t *root = json_object();
        for (size_t i = 0; root && i < qe_synth_arch_count(); i++) {
            json_t *c = config_json(qe_synth_arch(i));
            if (!c || json_object_set_new(root, qe_synth_arch(i)->name, c)) {
                json_decref(root);
                root = NULL;
            }
        }
        return print_json(root);
    }
    printf("%-14s %6s %6s %5s %4s %4s %6s %7s %7s %9s %5s %14s\n", "arch", "dim", "layers",
           "heads", "kv", "hd", "ffn", "vocab", "ctx", "rope", "tied", "params");
    for (size_t i = 0; i < qe_synth_arch_count(); i++) {
        const qe_synth_config *c = qe_synth_arch(i);
        qe_synth *s = NULL;
        qe_status st = qe_synth_new(c, QE_DT_F16, 0, &s);
        if (st != QE_OK)
            return qe_cli_report("synth", st);
        printf("%-14s %6d %6d %5d %4d %4d %6d %7d %7d %9g %5s %14" PRIu64 "\n", c->name, c->dim,
               c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->n_ff, c->n_vocab, c->n_ctx,
               c->rope_base, c->tied ? "yes" : "no", qe_synth_n_params(s));
        qe_synth_free(s);
    }
    printf("\n");
    for (size_t i = 0; i < qe_synth_arch_count(); i++)
        printf("%s: %s\n", qe_synth_arch(i)->name, qe_synth_arch(i)->note);
    return QE_EXIT_OK;
}

static void dims_text(const qe_synth_tensor *t, char *buf, size_t cap)
{
    if (t->n_dims == 1)
        snprintf(buf, cap, "%" PRId64, t->ne[0]);
    else
        snprintf(buf, cap, "%" PRId64 " x %" PRId64, t->ne[0], t->ne[1]);
}

/* The plan, in `qeval inspect`'s tensor-table format (without offsets). */
static int print_plan(qe_synth *s, uint64_t seed, qe_dtype weights, int json)
{
    uint64_t file_bytes = 0;
    qe_status st = qe_synth_file_bytes(s, &file_bytes);
    if (st != QE_OK)
        return qe_cli_report("synth", st);
    const qe_synth_config *c = qe_synth_config_of(s);
    size_t n = qe_synth_n_tensors(s);
    char dims[64];
    if (json) {
        json_t *root = json_object(), *ts = json_array();
        int bad = !root || !ts;
        bad = bad || json_object_set_new(root, "arch", json_string(c->name)) ||
              json_object_set_new(root, "weights", json_string(qe_dtype_name(weights))) ||
              json_object_set_new(root, "seed", json_integer((json_int_t)seed)) ||
              json_object_set_new(root, "config", config_json(c)) ||
              json_object_set_new(root, "n_tensors", json_integer((json_int_t)n)) ||
              json_object_set_new(root, "n_params", json_integer((json_int_t)qe_synth_n_params(s))) ||
              json_object_set_new(root, "data_bytes",
                                  json_integer((json_int_t)qe_synth_data_bytes(s))) ||
              json_object_set_new(root, "file_bytes", json_integer((json_int_t)file_bytes));
        for (size_t i = 0; !bad && i < n; i++) {
            const qe_synth_tensor *t = qe_synth_tensor_at(s, i);
            json_t *d = t->n_dims == 1 ? json_pack("[I]", (json_int_t)t->ne[0])
                                       : json_pack("[I,I]", (json_int_t)t->ne[0], (json_int_t)t->ne[1]);
            bad = json_array_append_new(ts, json_pack("{s:s, s:s, s:o, s:I}", "name", t->name,
                                                      "type", qe_dtype_name(t->type), "dims", d,
                                                      "bytes", (json_int_t)t->nbytes)) != 0;
        }
        if (bad || json_object_set_new(root, "tensors", ts)) {
            json_decref(root);
            root = NULL;
        }
        return print_json(root);
    }
    printf("arch:        %s\n", c->name);
    printf("weights:     %s\n", qe_dtype_name(weights));
    printf("seed:        %" PRIu64 "\n", seed);
    printf("shape:       dim %d, %d layers, %d heads (%d kv) x %d, ffn %d, vocab %d, ctx %d\n",
           c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->n_ff, c->n_vocab,
           c->n_ctx);
    printf("params:      %" PRIu64 "\n", qe_synth_n_params(s));
    printf("file size:   %" PRIu64 "\n", file_bytes);
    printf("tensors:     %zu (%" PRIu64 " bytes of data)\n", n, qe_synth_data_bytes(s));
    printf("  %5s  %-40s %-6s %-24s %12s\n", "#", "name", "type", "dims", "bytes");
    for (size_t i = 0; i < n; i++) {
        const qe_synth_tensor *t = qe_synth_tensor_at(s, i);
        dims_text(t, dims, sizeof dims);
        printf("  %5zu  %-40s %-6s %-24s %12" PRIu64 "\n", i, t->name, qe_dtype_name(t->type), dims,
               t->nbytes);
    }
    return QE_EXIT_OK;
}

int qe_cmd_synth(int argc, char **argv)
{
    static const struct {
        const char *opt, *label;
        long long lo, hi;
    } sizes[] = {
        {"--dim", "dim", 1, INT32_MAX},        {"--layers", "layers", 1, INT32_MAX},
        {"--heads", "heads", 1, INT32_MAX},    {"--kv-heads", "kv_heads", 1, INT32_MAX},
        {"--head-dim", "head_dim", 1, INT32_MAX}, {"--ffn", "ffn", 1, INT32_MAX},
        {"--vocab", "vocab", 1, INT32_MAX},    {"--ctx", "ctx", 1, INT32_MAX},
    };
    enum { N_SIZES = sizeof sizes / sizeof sizes[0] };
    long long val[N_SIZES];
    int given[N_SIZES] = {0};
    const char *arch = NULL, *out = NULL, *wname = "f16";
    int do_list = 0, json = 0, do_plan = 0, untied = 0;
    long long threads = 0, window = -1;
    const char *family = NULL;
    uint64_t seed = QE_SYNTH_DEFAULT_SEED;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char opt[32];
        /* --opt=value and --opt value. */
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof opt) {
            memcpy(opt, a, (size_t)(eq - a));
            opt[eq - a] = '\0';
            a = opt;
            v = eq + 1;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return QE_EXIT_OK;
        }
        if (!strcmp(a, "--list") || !strcmp(a, "--json") || !strcmp(a, "--plan") ||
            !strcmp(a, "--untied")) {
            if (v)
                return qe_cli_usage_error("synth", "%s takes no value", a);
            *(!strcmp(a, "--list") ? &do_list : !strcmp(a, "--json") ? &json
                                            : !strcmp(a, "--plan") ? &do_plan : &untied) = 1;
            continue;
        }
        int known = !strcmp(a, "--arch") || !strcmp(a, "--weights") || !strcmp(a, "--seed") ||
                    !strcmp(a, "--family") || !strcmp(a, "--window") ||
                    !strcmp(a, "--threads") || !strcmp(a, "-o") || !strcmp(a, "--output");
        int size_idx = -1;
        for (int k = 0; k < N_SIZES; k++)
            if (!strcmp(a, sizes[k].opt))
                size_idx = k;
        if (!known && size_idx < 0) {
            if (a[0] == '-')
                return qe_cli_usage_error("synth", "unknown option '%s'", argv[i]);
            return qe_cli_usage_error("synth", "unexpected argument '%s'", a);
        }
        if (!v) {
            if (i + 1 >= argc)
                return qe_cli_usage_error("synth", "%s needs a value", a);
            v = argv[++i];
        }
        if (size_idx >= 0) {
            const char *o = sizes[size_idx].opt;
            if (!parse_int(v, sizes[size_idx].lo, sizes[size_idx].hi, &val[size_idx]))
                return qe_cli_usage_error("synth", "%s '%s': expected an integer in %lld..%lld", o,
                                          v, sizes[size_idx].lo, sizes[size_idx].hi);
            given[size_idx] = 1;
        } else if (!strcmp(a, "--arch")) {
            arch = v;
        } else if (!strcmp(a, "--weights")) {
            wname = v;
        } else if (!strcmp(a, "--family")) {
            family = v;
        } else if (!strcmp(a, "--window")) {
            if (!parse_int(v, 0, INT32_MAX, &window))
                return qe_cli_usage_error("synth", "--window '%s': expected 0..%d", v, INT32_MAX);
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long x = strtoull(v, &end, 0);
            if (errno || end == v || *end || v[0] == '-')
                return qe_cli_usage_error("synth", "--seed '%s': expected an unsigned 64-bit integer",
                                          v);
            seed = (uint64_t)x;
        } else if (!strcmp(a, "--threads")) {
            if (!parse_int(v, 1, 64, &threads))
                return qe_cli_usage_error("synth", "--threads '%s': expected 1..64", v);
        } else {
            out = v;
        }
    }

    if (do_list)
        return list(json);
    if (!arch)
        return qe_cli_usage_error("synth", "--arch NAME is required (or --list)");
    if (json && !do_plan)
        return qe_cli_usage_error("synth", "--json goes with --plan or --list");
    if (!out && !do_plan)
        return qe_cli_usage_error("synth", "-o OUT.gguf is required (or --plan)");
    if (out && do_plan)
        return qe_cli_usage_error("synth", "--plan writes nothing: drop -o");
    qe_dtype weights;
    if (qe_dtype_from_name(wname, &weights) != QE_OK || !qe_quant_target_ok(weights))
        return qe_cli_usage_error("synth", "--weights '%s': expected f32, f16, q8_0 or q4_0", wname);
    qe_synth_config c;
    qe_status st = qe_synth_find(arch, &c);
    if (st != QE_OK)
        return qe_cli_usage_error("synth", "%s", qe_errmsg());

    /* Overrides, and the label that records them. */
    char label[256];
    int n = snprintf(label, sizeof label, "%s", c.name);
    int32_t *field[N_SIZES] = {&c.dim, &c.n_layers, &c.n_heads, &c.n_kv_heads,
                               &c.head_dim, &c.n_ff, &c.n_vocab, &c.n_ctx};
    int first = 1;
    /* The label cannot overflow: a table name and 8 options of at most
     * 9 + 1 + 10 characters take < 200 bytes, ",untied,family=gemma3" and
     * ",window=N" < 50 more. */
    for (int k = 0; k < N_SIZES; k++) {
        if (!given[k])
            continue;
        *field[k] = (int32_t)val[k];
        n += snprintf(label + n, sizeof label - (size_t)n, "%c%s=%lld", first ? ':' : ',',
                      sizes[k].label, val[k]);
        first = 0;
    }
    if (untied && c.tied) {
        c.tied = 0;
        n += snprintf(label + n, sizeof label - (size_t)n, "%cuntied", first ? ':' : ',');
        first = 0;
    }
    if (family) {
        int f = 0;
        while (qe_synth_family_name((qe_synth_family)f) &&
               strcmp(qe_synth_family_name((qe_synth_family)f), family) != 0)
            f++;
        if (!qe_synth_family_name((qe_synth_family)f))
            return qe_cli_usage_error("synth", "--family '%s': expected llama, qwen2 or gemma3",
                                      family);
        c.family = (qe_synth_family)f;
        if (c.family != QE_SYNTH_LLAMA) {
            n += snprintf(label + n, sizeof label - (size_t)n, "%cfamily=%s", first ? ':' : ',',
                          family);
            first = 0;
        }
    }
    if (window >= 0 && c.family != QE_SYNTH_GEMMA3)
        return qe_cli_usage_error("synth", "--window goes with --family gemma3");
    if (c.family == QE_SYNTH_GEMMA3) {
        c.swa_window = window >= 0 ? (int32_t)window : 512;
        if (window >= 0)
            n += snprintf(label + n, sizeof label - (size_t)n, ",window=%lld", window);
    }
    if ((given[0] || given[2]) && !given[4])
        c.head_dim = 0; /* dim / heads */
    c.name = label;

    qe_synth *s = NULL;
    if ((st = qe_synth_new(&c, weights, seed, &s)) != QE_OK) {
        qe_synth_free(s);
        return st == QE_EINVAL ? qe_cli_usage_error("synth", "%s", qe_errmsg())
                               : qe_cli_report("synth", st);
    }
    int rc;
    if (do_plan) {
        rc = print_plan(s, seed, weights, json);
    } else {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        st = qe_synth_write(s, out, (int)threads);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        uint64_t bytes = 0;
        if (st == QE_OK)
            st = qe_synth_file_bytes(s, &bytes);
        if (st == QE_OK)
            printf("%s: synthetic %s, %s, %zu tensors, %" PRIu64 " params, %" PRIu64
                   " bytes in %.2f s (%.0f MB/s), seed %" PRIu64 "\n",
                   out, qe_synth_config_of(s)->name, qe_dtype_name(weights), qe_synth_n_tensors(s),
                   qe_synth_n_params(s), bytes, sec, sec > 0 ? (double)bytes / sec / 1e6 : 0.0,
                   seed);
        rc = qe_cli_report("synth", st);
    }
    qe_synth_free(s);
    return rc;
}
