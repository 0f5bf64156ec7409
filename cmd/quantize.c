/* quantize.c - `qeval quantize IN.gguf OUT.gguf --type TYPE`: requantize a
 * Llama GGUF model's weight matrices (lib/quant.h) and write a
 * llama.cpp-compatible GGUF file.
 *
 * The input is opened as a model first (qe_model_open validates the whole
 * file and every tensor shape), so a corrupt or non-Llama input exits 3
 * before anything is written; the output appears atomically or not at all.
 *
 * Threading: single-threaded command.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dtype.h"
#include "model.h"
#include "quant.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qeval quantize IN.gguf OUT.gguf --type TYPE\n"
            "\n"
            "Converts the weight matrices of a Llama GGUF model to TYPE and writes a GGUF\n"
            "file llama.cpp can load: every metadata key copied, general.file_type set to\n"
            "llama.cpp's value for TYPE (f32 0, f16 1, q4_0 2, q8_0 7), tensors in the\n"
            "input's order and alignment. Q8_0/Q4_0 blocks are bit-identical to\n"
            "llama-quantize's (without an importance matrix).\n"
            "\n"
            "  --type TYPE   f32, f16, q8_0 or q4_0 (required)\n"
            "  --help        this text\n"
            "\n"
            "Which tensor gets which type:\n"
            "  norms and other 1-D tensors    unchanged\n"
            "  layer matrices                 TYPE\n"
            "  token_embd.weight              TYPE (the output rule when the model is tied)\n"
            "  output.weight                  TYPE, but q8_0 for q4_0 (llama-quantize would\n"
            "                                 pick q6_k, which qeval's device code lacks)\n"
            "  rows not a multiple of 32      f16 when TYPE is q8_0 or q4_0\n"
            "An output matrix that equals the embedding stays equal to it (tied).\n"
            "\n"
            "exit: 0 ok; 1 the input cannot be read or the output cannot be written;\n"
            "2 usage; 3 the input is not a valid Llama GGUF model.\n");
}

int qe_cmd_quantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *type = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return QE_EXIT_OK;
        } else if (!strcmp(argv[i], "--type")) {
            if (i + 1 >= argc)
                return qe_cli_usage_error("quantize", "--type needs a value (f32, f16, q8_0, q4_0)");
            type = argv[++i];
        } else if (!strncmp(argv[i], "--type=", 7)) {
            type = argv[i] + 7;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return qe_cli_usage_error("quantize", "unknown option '%s'", argv[i]);
        } else if (!in) {
            in = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            return qe_cli_usage_error("quantize", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!in || !out)
        return qe_cli_usage_error("quantize", "expected IN.gguf and OUT.gguf");
    if (!type)
        return qe_cli_usage_error("quantize", "--type is required (f32, f16, q8_0, q4_0)");
    qe_dtype target;
    if (qe_dtype_from_name(type, &target) != QE_OK || !qe_quant_target_ok(target))
        return qe_cli_usage_error("quantize", "unknown --type '%s' (expected f32, f16, q8_0, q4_0)",
                                  type);

    qe_model *m = NULL;
    qe_quant_model *q = NULL;
    qe_status st = qe_model_open(in, &m);
    if (st == QE_OK && !qe_model_gguf(m))
        st = qe_fail(QE_EUNSUPPORTED, "%s: not a GGUF file (quantize reads GGUF models)", in);
    if (st == QE_OK)
        st = qe_quant_model_new(m, target, &q);
    if (st == QE_OK)
        st = qe_quant_model_write_gguf(q, out);
    if (st == QE_OK)
        printf("%s: %s, weights %.3f MiB -> %.3f MiB\n", out, qe_dtype_name(target),
               (double)qe_model_weight_bytes(m) / (1024.0 * 1024.0),
               (double)qe_model_weight_bytes(qe_quant_model_get(q)) / (1024.0 * 1024.0));
    qe_quant_model_free(q);
    qe_model_close(m);
    return qe_cli_report("quantize", st);
}
