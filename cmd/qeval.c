/* qeval.c - the command line: parses the subcommand and hands over.
 *
 * The pipeline a token travels, and the library entry points each step uses:
 *   model file   -> qe_gguf_open (lib/gguf.h)          `qeval inspect`
 *   device       -> qe_cl_* (lib/cl.h)                 `qeval devices`
 * Each subcommand lives in cmd/<name>.c and parses its own options.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static int cmd_version(int argc, char **argv);

static const struct command commands[] = {
    {"version", cmd_version, "print the version and build commit"},
    {"devices", qe_cmd_devices, "list OpenCL devices, their limits and probed capabilities"},
    {"perplexity", qe_cmd_perplexity, "perplexity of a model over a text file (llama-perplexity's method)"},
    {"inspect", qe_cmd_inspect, "validate a GGUF file and show its metadata and tensors"},
    {"run", qe_cmd_run, "evaluate a job file's runs into a results database (resumable)"},
    {"merge", qe_cmd_merge, "merge results databases (Slurm array tasks) without duplicates"},
    {"compare", qe_cmd_compare, "the format comparison table: PPL, KLD, bits/weight, speed"},
    {"export", qe_cmd_export, "write runs, tokens, KLD or timings as CSV"},
    {"sql", qe_cmd_sql, "run a read-only SQL query on a results database"},
    {"tokenize", qe_cmd_tokenize, "text -> token ids with a model's tokenizer"},
    {"detokenize", qe_cmd_detokenize, "token ids -> text with a model's tokenizer"},
    {"quantize", qe_cmd_quantize, "convert a GGUF model's weights to f32, f16, q8_0 or q4_0"},
    {"bench", qe_cmd_bench, "prompt-processing and generation speed (llama-bench's pp/tg tests)"},
    {"generate", qe_cmd_generate, "continue prompts (greedy or sampled), batched with continuous batching"},
    {"synth", qe_cmd_synth, "write a synthetic model with the shapes of a real architecture"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: qeval COMMAND [OPTIONS]\n\n"
               "qeval measures what quantization formats cost LLMs in quality and speed.\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'qeval COMMAND --help' describes a command.\n"
               "exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 invalid input file\n");
}

static int cmd_version(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: qeval version\n\nPrints qeval's version and the git commit it was built from.\n");
        return QE_EXIT_OK;
    }
    if (argc > 1)
        return qe_cli_usage_error("version", "unexpected argument '%s'", argv[1]);
    printf("qeval %s (commit %s)\n", QE_VERSION, QE_COMMIT);
    return QE_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return QE_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return QE_EXIT_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "qeval: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return QE_EXIT_USAGE;
}
