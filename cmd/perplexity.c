/* perplexity.c - `qeval perplexity`: llama-perplexity's method on any OpenCL
 * device (or the C reference), with the running PPL per chunk, the final
 * PPL ± error, word/byte perplexity, tokens/s and the time split. With
 * --variants, a paired evaluation (lib/eval.h qe_eval_paired): a reference
 * configuration and variants on the same chunks, llama-perplexity's
 * KL-divergence statistics per variant and a comparison table. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval.h"
#include "log.h"
#include "model.h"
#include "quant.h"
#include "tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qeval perplexity --model M --file TEXT [options]\n\n"
            "Perplexity of a model over a text file, computed like llama.cpp's\n"
            "llama-perplexity: chunks of --ctx tokens (the first replaced by BOS when the\n"
            "model adds one), each scored on its second half, PPL = exp(mean NLL) ± its\n"
            "standard error. Also word and byte perplexity and bits per byte over the\n"
            "scored tokens' text (lm-evaluation-harness definitions).\n\n"
            "options:\n"
            "  -m, --model PATH      .gguf file or Hugging Face model directory\n"
            "  -f, --file PATH       text file to evaluate (read as one document)\n"
            "  -c, --ctx N           tokens per chunk (default 512)\n"
            "      --chunks K        evaluate only the first K chunks (default: all)\n"
            "  -b, --batch-seqs S    chunks evaluated side by side per batch (default 4);\n"
            "                        results do not depend on S\n"
            "  -d, --device D        OpenCL device (index or name part, see 'qeval devices'),\n"
            "                        or 'ref' for the plain-C double-precision reference\n"
            "      --top-k K         top-k entries computed per position (default 10)\n"
            "      --weights W       file (default: as stored), f32, f16, q8_0 or q4_0:\n"
            "                        requantize the weights in memory first (llama-quantize's\n"
            "                        type rule: norms f32, q4_0 keeps the output matrix q8_0)\n"
            "      --kv F            KV-cache format for K and V: f32, f16 (default, as in\n"
            "                        llama.cpp), q8_0, q4_0, tq4, tq3, tq2 (TurboQuant)\n"
            "      --kv-k F, --kv-v F  the K / V cache format alone\n"
            "      --variants LIST   paired evaluation: comma-separated model configurations\n"
            "                        run on the same chunks as the reference (--ref), each\n"
            "                        compared with it token by token on the device (KL-\n"
            "                        divergence, delta-p, same top token)\n"
            "      --ref SPEC        the reference configuration of --variants (default: the\n"
            "                        --weights/--kv options, i.e. file+kv=f16)\n"
            "      --dump FILE       write 'chunk<TAB>pos<TAB>target<TAB>logprob' per scored\n"
            "                        token (the format of tests/oracle/hf_logprobs.py)\n"
            "  -q, --quiet           no progress line\n"
            "  -h, --help            this text\n\n"
            "A configuration is ITEM[+ITEM...], ITEM one of file, f32, f16, q8_0, q4_0\n"
            "(weights), kv=F, kv-k=F, kv-v=F (cache formats); what a variant does not\n"
            "name is taken from the reference. Example:\n"
            "  --ref f32+kv=f32 --variants q8_0,q4_0,kv=q8_0,kv=tq4,q4_0+kv=tq3\n\n"
            "Output: '[i]ppl,' after each chunk, then 'Final estimate: PPL = x +/- y';\n"
            "with --variants, the reference's running PPL per chunk, then per variant\n"
            "llama-perplexity's KL-divergence statistics, then a comparison table.\n"
            "Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 invalid model or text.\n");
}


static qe_status print_chunk(void *ud, const qe_eval_chunk *c)
{
    FILE *dump = ud;
    printf("[%lld]%.4f,", (long long)c->index + 1, c->running.ppl);
    fflush(stdout);
    /* Same layout as tests/oracle/hf_logprobs.py, so the two can be diffed. */
    for (int j = 0; dump && j < c->n_scored; j++)
        fprintf(dump, "%lld\t%d\t%d\t%.9g\n", (long long)c->index, c->first + j, c->target[j],
                (double)c->logp[j]);
    if (dump && ferror(dump))
        return qe_fail(QE_EIO, "writing the --dump file failed");
    return QE_OK;
}

/* ---- paired evaluation output ---- */

#define MAX_VARIANTS QE_EVAL_MAX_VARIANTS

/* Per-chunk line of a paired run: the reference's running PPL. */
static qe_status print_paired_chunk(void *ud, const qe_eval_chunk *c)
{
    (void)ud;
    if (c->variant == 0) {
        printf("[%lld]%.4f,", (long long)c->index + 1, c->running.ppl);
        fflush(stdout);
    }
    return QE_OK;
}

/* llama-perplexity's --kl-divergence summary of one variant. */
static void print_kld(const char *name, const char *base, const qe_kld_summary *k)
{
    static const char *const kp[8] = {"99.9%", "99.0%", "95.0%", "90.0%",
                                      "10.0%", " 5.0%", " 1.0%", " 0.1%"};
    static const char *const dpl[10] = {"99.9%", "99.0%", "95.0%", "90.0%", "75.0%",
                                        "25.0%", "10.0%", " 5.0%", " 1.0%", " 0.1%"};
    printf("\n#### %s vs %s (%llu tokens) ####\n", name, base, (unsigned long long)k->n);
    printf("====== Perplexity statistics ======\n");
    printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", k->ppl_q, k->ppl_q_err);
    printf("Mean PPL(base)                : %10.6f ± %10.6f\n", k->ppl_base, k->ppl_base_err);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * k->cor);
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", k->ln_ratio, k->ln_ratio_err);
    printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", k->ppl_ratio, k->ppl_ratio_err);
    printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", k->ppl_diff, k->ppl_diff_err);
    printf("\n====== KL divergence statistics ======\n");
    printf("Mean    KLD: %10.6f ± %10.6f\n", k->kld.mean, k->kld.err);
    printf("Maximum KLD: %10.6f\n", k->kld_max);
    for (int i = 0; i < 4; i++)
        printf("%s   KLD: %10.6f\n", kp[i], k->kld_pct[i]);
    printf("Median  KLD: %10.6f\n", k->kld_median);
    for (int i = 4; i < 8; i++)
        printf("%s   KLD: %10.6f\n", kp[i], k->kld_pct[i]);
    printf("Minimum KLD: %10.6f\n", k->kld_min);
    printf("\n====== Token probability statistics ======\n");
    printf("Mean    Δp: %7.3f ± %5.3f %%\n", 100.0 * k->dp.mean, 100.0 * k->dp.err);
    printf("Maximum Δp: %7.3f%%\n", 100.0 * k->dp_max);
    for (int i = 0; i < 5; i++)
        printf("%s   Δp: %7.3f%%\n", dpl[i], 100.0 * k->dp_pct[i]);
    printf("Median  Δp: %7.3f%%\n", 100.0 * k->dp_median);
    for (int i = 5; i < 10; i++)
        printf("%s   Δp: %7.3f%%\n", dpl[i], 100.0 * k->dp_pct[i]);
    printf("Minimum Δp: %7.3f%%\n", 100.0 * k->dp_min);
    printf("RMS Δp    : %7.3f ± %5.3f %%\n", 100.0 * k->dp_rms, 100.0 * k->dp_rms_err);
    printf("Same top p: %7.3f ± %5.3f %%\n", 100.0 * k->same_top, 100.0 * k->same_top_err);
}

/* The comparison table: one row per configuration, the reference first. */
static void print_table(const qe_eval_variant *cfg, const qe_eval_variant_result *res, int n)
{
    int w = 9;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(cfg[i].name) + (i == 0 ? 6 : 0);
        w = l > w ? l : w;
    }
    /* "±" and "Δ" are two bytes but one column: their fields are one wider. */
    printf("\n%-*s  %21s  %10s  %9s  %9s  %10s  %6s  %12s  %9s\n", w, "variant", "PPL", "ΔPPL",
           "mean KLD", "99% KLD", "same-top", "bits/w", "weight bytes", "tokens/s");
    for (int i = 0; i < n; i++) {
        const qe_eval_variant_result *r = &res[i];
        const qe_model *m = cfg[i].model;
        const uint64_t bytes = qe_model_weight_bytes(m), params = qe_model_n_params(m);
        char name[256], ppl[40], dppl[16], kl[16], k99[16], same[16];
        snprintf(name, sizeof name, "%s%s", cfg[i].name, i == 0 ? " (ref)" : "");
        snprintf(ppl, sizeof ppl, "%.4f ± %.4f", r->ppl.ppl, r->ppl.ppl_err);
        if (i == 0) {
            snprintf(dppl, sizeof dppl, "-");
            snprintf(kl, sizeof kl, "-");
            snprintf(k99, sizeof k99, "-");
            snprintf(same, sizeof same, "-");
        } else {
            snprintf(dppl, sizeof dppl, "%+.3f%%", 100.0 * (r->ppl.ppl / res[0].ppl.ppl - 1.0));
            snprintf(kl, sizeof kl, "%.6f", r->kld.kld.mean);
            snprintf(k99, sizeof k99, "%.6f", r->kld.kld_pct[1]);
            snprintf(same, sizeof same, "%.3f%%", 100.0 * r->kld.same_top);
        }
        printf("%-*s  %22s  %9s  %9s  %9s  %10s  %6.2f  %12llu  %9.1f\n", w, name, ppl, dppl, kl,
               k99, same, params ? 8.0 * (double)bytes / (double)params : 0.0,
               (unsigned long long)bytes, r->seconds > 0 ? (double)r->n_tokens / r->seconds : 0.0);
    }
}

/* The model of a configuration: the file's, or a requantized one made once
 * per weight type (qms indexed by a small type slot). */
static qe_status spec_model(const qe_model *m, const qe_eval_spec *sp, qe_quant_model **qms,
                            const qe_model **out)
{
    static const qe_dtype slots[4] = {QE_DT_F32, QE_DT_F16, QE_DT_Q8_0, QE_DT_Q4_0};
    if (sp->file) {
        *out = m;
        return QE_OK;
    }
    int i = 0;
    while (i < 4 && slots[i] != sp->weights)
        i++;
    if (i == 4)
        return qe_fail(QE_EINVAL, "weights %s cannot be evaluated", qe_dtype_name(sp->weights));
    if (!qms[i]) {
        double t0 = qe_now();
        qe_status st = qe_quant_model_new(m, sp->weights, &qms[i]);
        if (st)
            return st;
        fprintf(stderr, "requantized the weights to %s in %.3f s\n", qe_dtype_name(sp->weights),
                qe_now() - t0);
    }
    *out = qe_quant_model_get(qms[i]);
    return QE_OK;
}

int qe_cmd_perplexity(int argc, char **argv)
{
    enum { OPT_WEIGHTS = 256, OPT_KV, OPT_KV_K, OPT_KV_V, OPT_REF, OPT_VARIANTS };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
        {"ctx", required_argument, 0, 'c'},   {"chunks", required_argument, 0, 'K'},
        {"batch-seqs", required_argument, 0, 'b'}, {"device", required_argument, 0, 'd'},
        {"top-k", required_argument, 0, 'k'}, {"quiet", no_argument, 0, 'q'},
        {"dump", required_argument, 0, 'D'},
        {"weights", required_argument, 0, OPT_WEIGHTS}, {"kv", required_argument, 0, OPT_KV},
        {"kv-k", required_argument, 0, OPT_KV_K}, {"kv-v", required_argument, 0, OPT_KV_V},
        {"ref", required_argument, 0, OPT_REF}, {"variants", required_argument, 0, OPT_VARIANTS},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *model_path = NULL, *text_path = NULL, *dump_path = NULL;
    const char *ref_text = NULL, *variants_text = NULL;
    qe_eval_opts o = qe_eval_opts_default();
    /* The configuration the options describe: weights as stored and, like
     * llama.cpp, an f16 cache (the library's default is the exact f32). */
    qe_eval_spec cfg = {.file = 1, .weights = QE_DT_F32, .kv_k = QE_KV_F16, .kv_v = QE_KV_F16};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:f:c:b:d:qh", longopts, NULL)) != -1) {
        long v;
        qe_kv_format kf;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': text_path = optarg; break;
        case 'd': o.device = optarg; break;
        case 'q': o.progress = 0; break;
        case 'D': dump_path = optarg; break;
        case 'h': usage(stdout); return QE_EXIT_OK;
        case OPT_REF: ref_text = optarg; break;
        case OPT_VARIANTS: variants_text = optarg; break;
        case OPT_WEIGHTS: {
            qe_eval_spec w;
            if (qe_eval_spec_parse(optarg, &cfg, &w) || strchr(optarg, '=') || strchr(optarg, '+'))
                return qe_cli_usage_error("perplexity", "bad value '%s' for --weights (expected "
                                          "file, f32, f16, q8_0 or q4_0)", optarg);
            cfg.file = w.file;
            cfg.weights = w.weights;
            break;
        }
        case OPT_KV: case OPT_KV_K: case OPT_KV_V:
            if (qe_kv_format_parse(optarg, &kf))
                return qe_cli_usage_error("perplexity", "bad value '%s' for --%s (expected f32, "
                                          "f16, q8_0, q4_0, tq4, tq3 or tq2)", optarg,
                                          c == OPT_KV ? "kv" : c == OPT_KV_K ? "kv-k" : "kv-v");
            if (c != OPT_KV_V)
                cfg.kv_k = kf;
            if (c != OPT_KV_K)
                cfg.kv_v = kf;
            break;
        case 'c': case 'K': case 'b': case 'k':
            if (qe_cli_parse_long(optarg, &v) || v < (c == 'k' ? 0 : 1) || v > (1L << 30))
                return qe_cli_usage_error("perplexity", "bad value '%s' for --%s", optarg,
                                          c == 'c' ? "ctx" : c == 'K' ? "chunks"
                                                   : c == 'b' ? "batch-seqs" : "top-k");
            if (c == 'c') o.n_ctx = (int)v;
            else if (c == 'K') o.max_chunks = v;
            else if (c == 'b') o.n_seq = (int)v;
            else o.top_k = (int)v;
            break;
        default:
            return qe_cli_usage_error("perplexity", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
    }
    if (optind < argc)
        return qe_cli_usage_error("perplexity", "unexpected argument '%s'", argv[optind]);
    if (!model_path || !text_path)
        return qe_cli_usage_error("perplexity", "--model and --file are required");
    if (ref_text && !variants_text)
        return qe_cli_usage_error("perplexity", "--ref needs --variants");

    /* Paired mode: parse every configuration before anything is loaded. */
    int n_cfg = 0;
    qe_eval_spec specs[1 + MAX_VARIANTS];
    char names[1 + MAX_VARIANTS][64];
    if (variants_text) {
        if (o.device && !strcmp(o.device, "ref"))
            return qe_cli_usage_error("perplexity", "--variants runs on an OpenCL device, not "
                                      "the C reference");
        if (dump_path)
            return qe_cli_usage_error("perplexity", "--dump is not available with --variants");
        specs[0] = cfg;
        if (ref_text && qe_eval_spec_parse(ref_text, &cfg, &specs[0]))
            return qe_cli_usage_error("perplexity", "--ref: %s", qe_errmsg());
        if (ref_text)
            snprintf(names[0], sizeof names[0], "%s", ref_text);
        else
            qe_eval_spec_format(&specs[0], names[0], sizeof names[0]);
        n_cfg = 1;
        for (const char *p = variants_text;;) {
            const char *end = strchr(p, ',');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            if (n_cfg > MAX_VARIANTS)
                return qe_cli_usage_error("perplexity", "--variants: more than %d variants",
                                          MAX_VARIANTS);
            if (n == 0 || n >= sizeof names[0])
                return qe_cli_usage_error("perplexity", "--variants: %s variant in '%s'",
                                          n ? "an over-long" : "an empty", variants_text);
            memcpy(names[n_cfg], p, n);
            names[n_cfg][n] = '\0';
            if (qe_eval_spec_parse(names[n_cfg], &specs[0], &specs[n_cfg]))
                return qe_cli_usage_error("perplexity", "--variants: %s", qe_errmsg());
            n_cfg++;
            if (!end)
                break;
            p = end + 1;
        }
    }

    qe_status st;
    qe_model *m = NULL;
    qe_quant_model *qms[4] = {0};
    qe_tokenizer *tok = NULL;
    qe_tokenizer_ids ids = {0};
    char *text = NULL;
    size_t text_len = 0;
    FILE *dump = NULL;
    int rc;
    double t0 = qe_now();
    if ((st = qe_model_open(model_path, &m)) || (st = qe_tokenizer_open(model_path, &tok)) ||
        (st = qe_cli_read_file(text_path, &text, &text_len)))
        goto done;
    if ((st = qe_tokenizer_encode(tok, text, text_len, QE_TOK_ADD_SPECIAL, &ids)))
        goto done;
    double t_tok = qe_now() - t0;
    char desc[1024];
    qe_model_describe(m, desc, sizeof desc);
    fprintf(stderr, "%s\n", desc);
    fprintf(stderr, "tokenized %s: %zu bytes -> %zu tokens in %.3f s\n", text_path, text_len,
            ids.n, t_tok);

    qe_eval_times tm;
    if (variants_text) {
        qe_eval_variant vars[1 + MAX_VARIANTS];
        qe_eval_variant_result res[1 + MAX_VARIANTS];
        for (int i = 0; i < n_cfg; i++) {
            vars[i].name = names[i];
            vars[i].kv_k = specs[i].kv_k;
            vars[i].kv_v = specs[i].kv_v;
            if ((st = spec_model(m, &specs[i], qms, &vars[i].model)))
                goto done;
        }
        st = qe_eval_paired(&vars[0], vars + 1, n_cfg - 1, tok, ids.v, (int64_t)ids.n, &o,
                            print_paired_chunk, NULL, res, &tm);
        if (tm.n_chunks)
            printf("\n");
        if (st)
            goto done;
        printf("Final estimate (reference %s): PPL = %.4f +/- %.5f\n", names[0], res[0].ppl.ppl,
               res[0].ppl.ppl_err);
        for (int i = 1; i < n_cfg; i++)
            print_kld(names[i], names[0], &res[i].kld);
        print_table(vars, res, n_cfg);
        printf("\nscored tokens: %llu in %lld chunks of %d; device: %s; time: tokenize %.3f s, "
               "upload %.3f s, prefill %.3f s, metrics %.3f s\n",
               (unsigned long long)res[0].ppl.n, (long long)tm.n_chunks, o.n_ctx, tm.device, t_tok,
               tm.upload, tm.prefill, tm.metrics);
        goto done;
    }

    const qe_model *em = m;
    if ((st = spec_model(m, &cfg, qms, &em)))
        goto done;
    o.kv_k = cfg.kv_k;
    o.kv_v = cfg.kv_v;
    fprintf(stderr, "weights: %s; KV cache: K %s, V %s\n",
            cfg.file ? "as stored" : qe_dtype_name(cfg.weights), qe_kv_format_name(o.kv_k),
            qe_kv_format_name(o.kv_v));
    qe_ppl_result r;
    if (dump_path && !(dump = fopen(dump_path, "w"))) {
        st = qe_fail(QE_EIO, "%s: cannot create: %s", dump_path, strerror(errno));
        goto done;
    }
    st = qe_eval_perplexity(em, tok, ids.v, (int64_t)ids.n, &o, print_chunk, dump, &r, &tm);
    if (dump && fclose(dump) != 0 && !st)
        st = qe_fail(QE_EIO, "%s: write failed: %s", dump_path, strerror(errno));
    dump = NULL;
    if (tm.n_chunks)
        printf("\n");
    if (st)
        goto done;
    printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    printf("scored tokens: %llu in %lld chunks of %d; word PPL %.4f, byte PPL %.4f, "
           "bits/byte %.4f\n",
           (unsigned long long)r.n, (long long)tm.n_chunks, o.n_ctx, r.word_ppl, r.byte_ppl,
           r.bits_per_byte);
    printf("device: %s; %.1f tokens/s; time: tokenize %.3f s, upload %.3f s, prefill %.3f s, "
           "metrics %.3f s\n",
           tm.device, tm.prefill > 0 ? (double)tm.n_tokens / tm.prefill : 0.0, t_tok, tm.upload,
           tm.prefill, tm.metrics);
done:
    rc = qe_cli_report("perplexity", st);
    if (dump)
        fclose(dump);
    free(text);
    qe_tokenizer_ids_free(&ids);
    qe_tokenizer_close(tok);
    for (int i = 0; i < 4; i++)
        qe_quant_model_free(qms[i]);
    qe_model_close(m);
    return rc;
}
