/* bench.c - `qeval bench`: llama-bench's pp/tg speed tests over lists of
 * prompt sizes, generation sizes, batch sizes, weight and KV formats
 * (lib/bench.h), printed as markdown, CSV or JSON and optionally stored in
 * the results database, with a per-kernel breakdown under --profile. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "log.h"
#include "model.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qeval bench --model M [options]\n\n"
            "Measures prompt processing (ppN: prefill of N tokens for each of b sequences,\n"
            "the LM head for the last one) and text generation (tgN: N decode steps for\n"
            "each of b sequences) like llama-bench, and perplexity-style prefill (pplN:\n"
            "the same prefill, then the LM head, log-softmax and the next token's log-prob\n"
            "for the second half of each sequence, as qeval perplexity and PyTorch's\n"
            "perplexity loop compute them). Every list is crossed with the others:\n"
            "weights x kv x b x (pp sizes, ppl sizes, then tg sizes). Each test runs\n"
            "once untimed, then -r times; t/s is the mean ± sample standard deviation of\n"
            "tokens/s over the repetitions.\n\n"
            "options:\n"
            "  -m, --model PATH      .gguf file or Hugging Face model directory\n"
            "  -p, --n-prompt LIST   pp sizes, e.g. 128,512 (default 512; 0 = no pp test)\n"
            "      --ppl LIST        ppl sizes, each >= 2 (default none)\n"
            "  -n, --n-gen LIST      tg sizes (default 128; 0 = no tg test)\n"
            "  -b, --batch LIST      sequences side by side (default 1)\n"
            "      --weights LIST    file (as stored) or f32, f16, q8_0, q4_0: the model is\n"
            "                        requantized on the host first (default file)\n"
            "      --kv LIST         KV-cache formats: f32, f16, q8_0, q4_0, tq4, tq3, tq2, or\n"
            "                        K/V pairs such as q8_0/f16 (default f16)\n"
            "  -r, --reps N          measured repetitions (default 5)\n"
            "      --no-warmup       skip the untimed repetition\n"
            "  -o, --output FMT      md (default), csv or json\n"
            "      --db FILE         also store every result in the results database (tables\n"
            "                        bench, bench_kernels)\n"
            "      --gemm G          matmul kernels: auto (default: tensor cores where the\n"
            "                        device has inline-PTX mma.sync, else f32), f32, or mma\n"
            "                        (f16 operands, f32 sums); QEVAL_GEMM sets auto's choice\n"
            "      --profile         per-kernel device times (OpenCL profiling events), as a\n"
            "                        breakdown table per test, and the host's launches and\n"
            "                        time enqueueing them\n"
            "      --seed S          seed of the random token ids (default 0)\n"
            "  -d, --device D        OpenCL device (index or name part, see 'qeval devices')\n"
            "  -h, --help            this text\n\n"
            "Exit codes: 0 ok, 1 runtime failure, 2 usage error (bad list or value),\n"
            "3 invalid model or a format the model's shapes do not fit.\n");
}

/* Comma-separated items of s (modified in place) into v[0 .. *n). */
static int split(char *s, char **v, int cap, int *n, const char *opt)
{
    *n = 0;
    for (char *p = s;;) {
        char *c = strchr(p, ',');
        if (c)
            *c = '\0';
        if (!*p)
            return qe_cli_usage_error("bench", "--%s: empty item in the list", opt);
        if (*n == cap)
            return qe_cli_usage_error("bench", "--%s: more than %d items", opt, cap);
        v[(*n)++] = p;
        if (!c)
            return 0;
        p = c + 1;
    }
}

#define LIST_MAX 64

static int parse_ints(char *s, int *v, int *n, const char *opt)
{
    char *items[LIST_MAX];
    int rc = split(s, items, LIST_MAX, n, opt);
    for (int i = 0; rc == 0 && i < *n; i++) {
        long x;
        if (qe_cli_parse_long(items[i], &x) || x < 0 || x > (1L << 30))
            return qe_cli_usage_error("bench", "--%s: '%s' is not a count", opt, items[i]);
        v[i] = (int)x;
    }
    return rc;
}

typedef struct bench_ctx {
    qe_bench_out *out;
    qe_bench_db *db;
    const qe_bench_env *env;
    const qe_bench_opts *o;
} bench_ctx;

static qe_status on_result(void *ud, const qe_bench_result *r)
{
    bench_ctx *c = ud;
    qe_status st = qe_bench_out_row(c->out, r);
    if (st == QE_OK && c->db)
        st = qe_bench_db_put(c->db, c->env, c->o, r);
    return st;
}

int qe_cmd_bench(int argc, char **argv)
{
    enum { O_WEIGHTS = 256, O_KV, O_NOWARM, O_DB, O_PROFILE, O_SEED, O_GEMM, O_PPL };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},     {"n-prompt", required_argument, 0, 'p'},
        {"n-gen", required_argument, 0, 'n'},     {"batch", required_argument, 0, 'b'},
        {"weights", required_argument, 0, O_WEIGHTS}, {"kv", required_argument, 0, O_KV},
        {"reps", required_argument, 0, 'r'},      {"no-warmup", no_argument, 0, O_NOWARM},
        {"output", required_argument, 0, 'o'},    {"db", required_argument, 0, O_DB},
        {"profile", no_argument, 0, O_PROFILE},   {"seed", required_argument, 0, O_SEED},
        {"device", required_argument, 0, 'd'},    {"help", no_argument, 0, 'h'},
        {"gemm", required_argument, 0, O_GEMM},   {"ppl", required_argument, 0, O_PPL},
        {0, 0, 0, 0}};
    static char def_p[] = "512", def_n[] = "128", def_b[] = "1", def_w[] = "file", def_kv[] = "f16";
    char *lp = def_p, *ll = NULL, *ln = def_n, *lb = def_b, *lw = def_w, *lkv = def_kv;
    const char *model_path = NULL, *db_path = NULL, *device = NULL;
    qe_bench_opts o = qe_bench_opts_default();
    qe_bench_format fmt = QE_BENCH_MD;
    int c, rc = QE_EXIT_OK;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:p:n:b:r:o:d:h", longopts, NULL)) != -1) {
        long v;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'p': lp = optarg; break;
        case O_PPL: ll = optarg; break;
        case 'n': ln = optarg; break;
        case 'b': lb = optarg; break;
        case O_WEIGHTS: lw = optarg; break;
        case O_KV: lkv = optarg; break;
        case O_NOWARM: o.warmup = 0; break;
        case O_DB: db_path = optarg; break;
        case O_PROFILE: o.profile = 1; break;
        case O_GEMM:
            if (!qe_gemm_parse(optarg, &o.gemm))
                return qe_cli_usage_error("bench", "bad value '%s' for --gemm (auto, f32, mma)",
                                          optarg);
            break;
        case 'd': device = optarg; break;
        case 'h': usage(stdout); return QE_EXIT_OK;
        case 'r':
            if (qe_cli_parse_long(optarg, &v) || v < 1 || v > 100000)
                return qe_cli_usage_error("bench", "bad value '%s' for --reps", optarg);
            o.reps = (int)v;
            break;
        case O_SEED:
            if (qe_cli_parse_long(optarg, &v) || v < 0)
                return qe_cli_usage_error("bench", "bad value '%s' for --seed", optarg);
            o.seed = (uint64_t)v;
            break;
        case 'o':
            if (qe_bench_parse_format(optarg, &fmt) != QE_OK)
                return qe_cli_usage_error("bench", "--output: '%s' is not md, csv or json", optarg);
            break;
        default:
            return qe_cli_usage_error("bench", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return qe_cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (!model_path)
        return qe_cli_usage_error("bench", "--model is required");
    int np[LIST_MAX], nl[LIST_MAX], ng[LIST_MAX], nb[LIST_MAX], nw = 0, nk = 0;
    char *weights[LIST_MAX], *kv[LIST_MAX];
    if ((rc = parse_ints(lp, np, &o.n_n_prompt, "n-prompt")) || (rc = parse_ints(ln, ng, &o.n_n_gen, "n-gen")) ||
        (ll && (rc = parse_ints(ll, nl, &o.n_n_ppl, "ppl"))) ||
        (rc = parse_ints(lb, nb, &o.n_n_batch, "batch")) ||
        (rc = split(lw, weights, LIST_MAX, &nw, "weights")) || (rc = split(lkv, kv, LIST_MAX, &nk, "kv")))
        return rc;
    o.n_prompt = np;
    o.n_ppl = nl;
    o.n_gen = ng;
    o.n_batch = nb;
    o.weights = (const char *const *)weights;
    o.n_weights = nw;
    o.kv = (const char *const *)kv;
    o.n_kv = nk;

    qe_status st;
    qe_model *m = NULL;
    qe_cl *cl = NULL;
    qe_bench_db *db = NULL;
    qe_bench_out *out = NULL;
    qe_bench_env env;
    if ((st = qe_model_open(model_path, &m)) != QE_OK || (st = qe_bench_check(m, &o)) != QE_OK ||
        (st = qe_cl_open(device, o.profile ? QE_CL_PROFILE : 0, &cl)) != QE_OK ||
        (st = qe_bench_env_make(m, cl, &env)) != QE_OK)
        goto done;
    if (db_path && (st = qe_bench_db_open(db_path, &db)) != QE_OK)
        goto done;
    if ((st = qe_bench_out_begin(stdout, fmt, &env, &out)) != QE_OK)
        goto done;
    bench_ctx bc = {.out = out, .db = db, .env = &env, .o = &o};
    st = qe_bench_run(m, cl, &o, on_result, &bc);
    if (st == QE_OK) {
        st = qe_bench_out_end(out);
        out = NULL;
    }
done:
    rc = qe_cli_report("bench", st);
    qe_bench_out_free(out);
    qe_bench_db_close(db);
    qe_cl_close(cl);
    qe_model_close(m);
    return rc;
}
