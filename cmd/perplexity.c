/* perplexity.c - `qeval perplexity`: llama-perplexity's method on any OpenCL
 * device (or the C reference), with the running PPL per chunk, the final
 * PPL ± error, word/byte perplexity, tokens/s and the time split. */
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
            "      --dump FILE       write 'chunk<TAB>pos<TAB>target<TAB>logprob' per scored\n"
            "                        token (the format of tests/oracle/hf_logprobs.py)\n"
            "  -q, --quiet           no progress line\n"
            "  -h, --help            this text\n\n"
            "Output: '[i]ppl,' after each chunk, then 'Final estimate: PPL = x +/- y'.\n"
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

int qe_cmd_perplexity(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
        {"ctx", required_argument, 0, 'c'},   {"chunks", required_argument, 0, 'K'},
        {"batch-seqs", required_argument, 0, 'b'}, {"device", required_argument, 0, 'd'},
        {"top-k", required_argument, 0, 'k'}, {"quiet", no_argument, 0, 'q'},
        {"dump", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *model_path = NULL, *text_path = NULL, *dump_path = NULL;
    qe_eval_opts o = qe_eval_opts_default();
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:f:c:b:d:qh", longopts, NULL)) != -1) {
        long v;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': text_path = optarg; break;
        case 'd': o.device = optarg; break;
        case 'q': o.progress = 0; break;
        case 'D': dump_path = optarg; break;
        case 'h': usage(stdout); return QE_EXIT_OK;
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

    qe_status st;
    qe_model *m = NULL;
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

    qe_ppl_result r;
    qe_eval_times tm;
    if (dump_path && !(dump = fopen(dump_path, "w"))) {
        st = qe_fail(QE_EIO, "%s: cannot create: %s", dump_path, strerror(errno));
        goto done;
    }
    st = qe_eval_perplexity(m, tok, ids.v, (int64_t)ids.n, &o, print_chunk, dump, &r, &tm);
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
    qe_model_close(m);
    return rc;
}
