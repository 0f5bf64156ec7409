/* generate.c - `qeval generate`: greedy or sampled continuations of one or
 * many prompts (lib/generate.h), decoded side by side with continuous
 * batching; prints each generation (text or JSON lines, in prompt order
 * whatever order they finish in) and a timing summary on stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "generate.h"
#include "log.h"
#include "model.h"
#include "quant.h"
#include "tokenizer.h"
#include "unicode.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qeval generate --model M (--prompt STR | --prompts FILE) [options]\n\n"
            "Continues each prompt with the model on an OpenCL device. Prompts are decoded\n"
            "side by side (--batch slots, refilled as soon as a prompt finishes); a prompt's\n"
            "output does not depend on the batch or on the other prompts.\n\n"
            "options:\n"
            "  -m, --model PATH      .gguf file or Hugging Face model directory\n"
            "  -p, --prompt STR      a prompt (repeatable)\n"
            "  -f, --prompts FILE    prompts: .jsonl (one object per line with a string field\n"
            "                        \"prompt\") or text (one prompt per line, empty lines skipped)\n"
            "  -n, --max-new N       tokens generated per prompt at most (default 128)\n"
            "  -b, --batch B         sequences decoded side by side (default 8)\n"
            "  -c, --ctx N           positions per sequence (default: longest prompt +\n"
            "                        max-new, at most the model's training context)\n"
            "      --temp T          sampling temperature; 0 = greedy (default 0)\n"
            "      --top-k K         sample among the K most likely tokens (default 40;\n"
            "                        0 = all the device returns, at most 64)\n"
            "      --top-p P         nucleus sampling mass, 0 < P <= 1 (default 1)\n"
            "      --seed S          run seed; prompt i samples with hash(S, i) (default 0)\n"
            "  -s, --stop STR        stop when the text contains STR (repeatable; STR is cut)\n"
            "      --logprobs K      top-K log-probs per generated token in --json (default 5)\n"
            "      --parse-special   control-token texts in prompts become those tokens\n"
            "      --weights W       file (as stored, default), f32, f16, q8_0 or q4_0: the\n"
            "                        model is requantized on the host first\n"
            "      --kv F            KV-cache format, or K/V formats (default f16; f32, q8_0,\n"
            "                        q4_0, tq4, tq3, tq2)\n"
            "  -d, --device D        OpenCL device (index or name part, see 'qeval devices')\n"
            "      --json            one JSON object per prompt (JSON lines) instead of text\n"
            "  -q, --quiet           no progress line and no summary\n"
            "  -h, --help            this text\n\n"
            "Text output: '--- prompt I (N tokens -> M generated, FINISH)' then the prompt and\n"
            "its continuation. FINISH is eos, stop, length (--max-new) or ctx (context full).\n"
            "Exit codes: 0 ok, 1 runtime failure, 2 usage error (bad option, prompt longer\n"
            "than the context), 3 invalid model or prompts file.\n");
}

/* ---- prompt list ---- */

typedef struct plist {
    char **v;
    size_t *len;
    size_t n, cap;
} plist;

static qe_status plist_add(plist *p, const char *s, size_t n)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        char **v = realloc(p->v, cap * sizeof *v);
        if (v)
            p->v = v;
        size_t *l = v ? realloc(p->len, cap * sizeof *l) : NULL;
        if (!v || !l)
            return qe_fail(QE_ENOMEM, "out of memory for prompts");
        p->len = l;
        p->cap = cap;
    }
    char *c = malloc(n + 1);
    if (!c)
        return qe_fail(QE_ENOMEM, "out of memory for prompts");
    memcpy(c, s, n);
    c[n] = '\0';
    p->v[p->n] = c;
    p->len[p->n++] = n;
    return QE_OK;
}

static void plist_free(plist *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v);
    free(p->len);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A .jsonl file (objects with a string "prompt") or a text file (one prompt
 * per line). */
static qe_status read_prompts(const char *path, plist *p)
{
    char *buf = NULL;
    size_t len = 0;
    qe_status st = qe_cli_read_file(path, &buf, &len);
    if (st != QE_OK)
        return st;
    const int jsonl = ends_with(path, ".jsonl") || ends_with(path, ".json");
    size_t line = 0;
    for (size_t at = 0; at < len && st == QE_OK;) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - buf) : len, n = end - at;
        const char *s = buf + at;
        at = end + 1;
        line++;
        if (n && s[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        if (!jsonl) {
            st = plist_add(p, s, n);
            continue;
        }
        json_error_t err;
        json_t *j = json_loadb(s, n, 0, &err);
        json_t *f = j ? json_object_get(j, "prompt") : NULL;
        if (!j)
            st = qe_fail(QE_ECORRUPT, "%s:%zu: column %d: %s", path, line, err.column, err.text);
        else if (!json_is_string(f))
            st = qe_fail(QE_ECORRUPT, "%s:%zu: expected an object with a string field \"prompt\"",
                         path, line);
        else
            st = plist_add(p, json_string_value(f), json_string_length(f));
        json_decref(j);
    }
    if (st == QE_OK && p->n == 0)
        st = qe_fail(QE_ECORRUPT, "%s: no prompts in the file", path);
    free(buf);
    return st;
}

/* ---- output, in prompt order ---- */

typedef struct out_ctx {
    const qe_tokenizer *tok;
    const qe_gen_opts *o;
    int json, quiet;
    char **ready;      /* [n] finished outputs not yet printed */
    size_t n, next;    /* prompts; next one to print */
    double ttft_sum;
} out_ctx;

/* A JSON string; bytes that are not UTF-8 (a generation can stop inside a
 * multi-byte character) become U+FFFD. */
static json_t *jstr(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    char *clean = malloc(n * 3 + 1);
    size_t o = 0;
    if (!clean)
        return NULL;
    for (size_t k = 0; k < n;) {
        uint32_t cp;
        size_t l = qe_unicode_decode(s + k, n - k, &cp);
        if (cp == QE_UNICODE_INVALID) {
            memcpy(clean + o, "\xef\xbf\xbd", 3);
            o += 3;
        } else {
            memcpy(clean + o, s + k, l);
            o += l;
        }
        k += l;
    }
    j = json_stringn(clean, o);
    free(clean);
    return j;
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static char *render_json(const out_ctx *c, const qe_gen_result *r)
{
    json_t *o = json_object(), *toks = json_array(), *lps = json_array(), *tops = json_array();
    for (int i = 0; i < r->n_gen; i++) {
        json_array_append_new(toks, json_integer(r->ids[i]));
        json_array_append_new(lps, jnum(r->logp[i]));
        json_t *row = json_array();
        for (int j = 0; j < r->top_k; j++) {
            const int32_t id = r->topk_id[(size_t)i * r->top_k + j];
            size_t pl = 0;
            const char *piece = qe_tokenizer_piece(c->tok, id, &pl);
            json_t *e = json_object();
            json_object_set_new(e, "id", json_integer(id));
            json_object_set_new(e, "token", jstr(piece ? piece : "", pl));
            json_object_set_new(e, "logprob", jnum(r->topk_logp[(size_t)i * r->top_k + j]));
            json_array_append_new(row, e);
        }
        json_array_append_new(tops, row);
    }
    json_object_set_new(o, "index", json_integer((json_int_t)r->index));
    json_object_set_new(o, "prompt", jstr(r->prompt, r->prompt_len));
    json_object_set_new(o, "text", jstr(r->text, r->text_len));
    json_object_set_new(o, "finish", json_string(qe_gen_finish_name(r->finish)));
    json_object_set_new(o, "stop", r->stop_index >= 0 ? json_string(c->o->stop[r->stop_index])
                                                       : json_null());
    json_object_set_new(o, "n_prompt", json_integer(r->n_prompt));
    json_object_set_new(o, "n_gen", json_integer(r->n_gen));
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
    json_object_set_new(o, "seed", json_string(seed)); /* uint64: a string, JSON numbers are doubles */
    json_object_set_new(o, "tokens", toks);
    json_object_set_new(o, "logprobs", lps);
    json_object_set_new(o, "top_logprobs", tops);
    json_object_set_new(o, "ttft_s", jnum(r->ttft_s));
    json_object_set_new(o, "prefill_tps", jnum(r->prefill_tps));
    json_object_set_new(o, "decode_tps", jnum(r->decode_tps));
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    return s;
}

static char *render_text(const qe_gen_result *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fprintf(f, "--- prompt %zu (%d tokens -> %d generated, %s)\n", r->index, r->n_prompt, r->n_gen,
            qe_gen_finish_name(r->finish));
    fwrite(r->prompt, 1, r->prompt_len, f);
    fwrite(r->text, 1, r->text_len, f);
    fputc('\n', f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static qe_status on_result(void *ud, const qe_gen_result *r)
{
    out_ctx *c = ud;
    char *s = c->json ? render_json(c, r) : render_text(r);
    if (!s)
        return qe_fail(QE_ENOMEM, "out of memory formatting prompt %zu", r->index);
    c->ready[r->index] = s;
    c->ttft_sum += r->ttft_s;
    while (c->next < c->n && c->ready[c->next]) {
        fputs(c->ready[c->next], stdout);
        if (c->json)
            fputc('\n', stdout);
        free(c->ready[c->next]);
        c->ready[c->next++] = NULL;
    }
    fflush(stdout);
    return ferror(stdout) ? qe_fail(QE_EIO, "writing to stdout failed") : QE_OK;
}

/* ---- command ---- */

static int parse_num(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return qe_cli_usage_error("generate", "bad value '%s' for --%s", s, opt);
    *out = v;
    return 0;
}

int qe_cmd_generate(int argc, char **argv)
{
    enum { O_TEMP = 256, O_TOPK, O_TOPP, O_SEED, O_LOGPROBS, O_JSON, O_SPECIAL, O_WEIGHTS, O_KV };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},  {"prompt", required_argument, 0, 'p'},
        {"prompts", required_argument, 0, 'f'}, {"max-new", required_argument, 0, 'n'},
        {"batch", required_argument, 0, 'b'},  {"ctx", required_argument, 0, 'c'},
        {"temp", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP}, {"seed", required_argument, 0, O_SEED},
        {"stop", required_argument, 0, 's'},   {"logprobs", required_argument, 0, O_LOGPROBS},
        {"parse-special", no_argument, 0, O_SPECIAL}, {"device", required_argument, 0, 'd'},
        {"json", no_argument, 0, O_JSON},      {"quiet", no_argument, 0, 'q'},
        {"weights", required_argument, 0, O_WEIGHTS}, {"kv", required_argument, 0, O_KV},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *model_path = NULL, *prompts_path = NULL, *weights = "file";
    qe_gen_opts o = qe_gen_opts_default();
    o.progress = 1;
    o.kv_k = o.kv_v = QE_KV_F16; /* as qeval perplexity and llama.cpp */
    out_ctx oc = {.o = &o};
    plist pl = {0};
    const char **stops = NULL;
    int n_stop = 0, c, rc = QE_EXIT_OK;
    qe_status st = QE_OK;
    qe_model *m = NULL;
    qe_quant_model *qm = NULL;
    qe_tokenizer *tok = NULL;
    qe_dtype wtype = QE_DT_F32;
    optind = 1;
    opterr = 0;
    stops = calloc((size_t)argc, sizeof *stops);
    if (!stops)
        return qe_cli_report("generate", qe_fail(QE_ENOMEM, "out of memory"));
    while ((c = getopt_long(argc, argv, "m:p:f:n:b:c:s:d:qh", longopts, NULL)) != -1) {
        double v = 0;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': prompts_path = optarg; break;
        case 'd': o.device = optarg; break;
        case 'q': o.progress = 0; oc.quiet = 1; break;
        case O_JSON: oc.json = 1; break;
        case O_SPECIAL: o.parse_special = 1; break;
        case O_WEIGHTS: weights = optarg; break;
        case O_KV:
            if (qe_bench_parse_kv(optarg, &o.kv_k, &o.kv_v) != QE_OK) {
                rc = qe_cli_usage_error("generate", "--kv: %s", qe_errmsg());
                goto done;
            }
            break;
        case 'h': usage(stdout); goto done;
        case 'p':
            if ((st = plist_add(&pl, optarg, strlen(optarg))) != QE_OK)
                goto done;
            break;
        case 's':
            if (!optarg[0]) {
                rc = qe_cli_usage_error("generate", "--stop needs a non-empty string");
                goto done;
            }
            stops[n_stop++] = optarg;
            break;
        case 'n': case 'b': case 'c': case O_TOPK: case O_LOGPROBS: {
            static const char *names[] = {"max-new", "batch", "ctx", "top-k", "logprobs"};
            const int which = c == 'n' ? 0 : c == 'b' ? 1 : c == 'c' ? 2 : c == O_TOPK ? 3 : 4;
            const double lo = which <= 1 ? 1 : 0, hi = which == 4 ? 64 : (double)(1 << 20);
            if ((rc = parse_num(names[which], optarg, lo, hi, &v)) != 0)
                goto done;
            if (v != floor(v)) {
                rc = qe_cli_usage_error("generate", "bad value '%s' for --%s", optarg, names[which]);
                goto done;
            }
            int iv = (int)v;
            if (which == 0) o.max_new = iv;
            else if (which == 1) o.n_slots = iv;
            else if (which == 2) o.n_ctx = iv;
            else if (which == 3) o.sample.top_k = iv;
            else o.top_k = iv;
            break;
        }
        case O_TEMP:
            if ((rc = parse_num("temp", optarg, 0, 1e6, &v)) != 0)
                goto done;
            o.sample.temp = (float)v;
            break;
        case O_TOPP:
            if ((rc = parse_num("top-p", optarg, 1e-9, 1, &v)) != 0)
                goto done;
            o.sample.top_p = (float)v;
            break;
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-') {
                rc = qe_cli_usage_error("generate", "bad value '%s' for --seed", optarg);
                goto done;
            }
            o.sample.seed = s;
            break;
        }
        default:
            rc = qe_cli_usage_error("generate", "unknown or incomplete option '%s'", argv[optind - 1]);
            goto done;
        }
    }
    if (optind < argc) {
        rc = qe_cli_usage_error("generate", "unexpected argument '%s'", argv[optind]);
        goto done;
    }
    if (!model_path || (!pl.n && !prompts_path)) {
        rc = qe_cli_usage_error("generate", "--model and a --prompt or --prompts file are required");
        goto done;
    }
    if (strcmp(weights, "file") != 0 &&
        (qe_dtype_from_name(weights, &wtype) != QE_OK || !qe_quant_target_ok(wtype))) {
        rc = qe_cli_usage_error("generate", "--weights: '%s' is not file, f32, f16, q8_0 or q4_0",
                                weights);
        goto done;
    }
    o.stop = stops;
    o.n_stop = n_stop;
    if (prompts_path && (st = read_prompts(prompts_path, &pl)) != QE_OK)
        goto done;
    if ((st = qe_model_open(model_path, &m)) != QE_OK || (st = qe_tokenizer_open(model_path, &tok)) != QE_OK)
        goto done;
    if (strcmp(weights, "file") != 0) {
        if ((st = qe_quant_model_new(m, wtype, &qm)) != QE_OK)
            goto done;
    }
    oc.tok = tok;
    oc.n = pl.n;
    oc.ready = calloc(pl.n, sizeof *oc.ready);
    if (!oc.ready) {
        st = qe_fail(QE_ENOMEM, "out of memory");
        goto done;
    }
    qe_gen_stats gs;
    st = qe_generate(qm ? qe_quant_model_get(qm) : m, tok, NULL, (const char *const *)pl.v, pl.len, pl.n, &o, on_result, NULL,
                     &oc, &gs);
    if (st != QE_OK || oc.quiet)
        goto done;
    fprintf(stderr,
            "device: %s; weights %s, kv %s/%s; %zu prompts, %d slots of %d positions\n"
            "prefill: %lld tokens in %.3f s (%.1f tokens/s, %lld calls); mean time to first "
            "token %.3f s\n"
            "decode: %lld tokens in %.3f s (%.1f tokens/s, %lld steps, mean batch %.2f)\n"
            "generated %lld tokens; upload %.3f s, generation %.3f s\n",
            gs.device, weights, qe_kv_format_name(o.kv_k), qe_kv_format_name(o.kv_v), gs.n_prompts,
            gs.n_slots, gs.n_ctx, (long long)gs.prompt_tokens, gs.prefill_s,
            gs.prefill_s > 0 ? (double)gs.prompt_tokens / gs.prefill_s : 0.0,
            (long long)gs.prefill_calls, gs.n_prompts ? oc.ttft_sum / (double)gs.n_prompts : 0.0,
            (long long)gs.decode_rows, gs.decode_s,
            gs.decode_s > 0 ? (double)gs.decode_rows / gs.decode_s : 0.0, (long long)gs.decode_calls,
            gs.decode_calls ? (double)gs.decode_rows / (double)gs.decode_calls : 0.0,
            (long long)gs.gen_tokens, gs.upload_s, gs.wall_s);
done:
    if (st != QE_OK)
        rc = qe_cli_report("generate", st);
    for (size_t i = 0; oc.ready && i < oc.n; i++)
        free(oc.ready[i]);
    free(oc.ready);
    free(stops);
    plist_free(&pl);
    qe_tokenizer_close(tok);
    qe_quant_model_free(qm);
    qe_model_close(m);
    return rc;
}
