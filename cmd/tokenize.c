/* tokenize.c - `qeval tokenize` and `qeval detokenize`: text <-> token ids
 * with a model's tokenizer (lib/tokenizer.h), for checking what a dataset
 * turns into and for comparing with other tools.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "tokenizer.h"

/* Whole file (or stdin for NULL) into a malloc'ed buffer. */
static qe_status read_all(const char *path, char **out, size_t *len)
{
    FILE *f = path ? fopen(path, "rb") : stdin;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    qe_status st = QE_OK;
    if (!f)
        return qe_fail(QE_EIO, "%s: cannot open: %s", path, strerror(errno));
    for (;;) {
        if (cap - n < 65536) {
            size_t c = cap ? cap * 2 : 1 << 20;
            char *b = realloc(buf, c + 1);
            if (!b) {
                st = qe_fail(QE_ENOMEM, "%s: out of memory reading it", path ? path : "stdin");
                goto done;
            }
            buf = b, cap = c;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
    }
    if (ferror(f)) {
        st = qe_fail(QE_EIO, "%s: read error: %s", path ? path : "stdin", strerror(errno));
        goto done;
    }
    buf[n] = '\0';
    *out = buf, *len = n;
    buf = NULL;
done:
    free(buf);
    if (path)
        fclose(f);
    return st;
}

/* Vocabulary text with bytes that would break the one-token-per-line
 * output escaped: \n \t \r \\ and \xNN for other control bytes. */
static void print_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c == '\\')
            fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
}

static void tokenize_help(void)
{
    printf("usage: qeval tokenize --model PATH [--text STR | --file F] [--ids | --pieces | --count]\n"
           "                      [--no-bos] [--parse-special]\n\n"
           "Tokenizes text with a model's tokenizer exactly as qeval tokenizes datasets\n"
           "(whole input as one string). Without --text or --file, reads stdin.\n\n"
           "  --model PATH      a .gguf file, a tokenizer.json, or a Hugging Face model\n"
           "                    directory holding tokenizer.json\n"
           "  --text STR        the text to tokenize\n"
           "  --file F          tokenize the bytes of file F\n"
           "  --ids             print the ids, space separated, on one line (default)\n"
           "  --pieces          print one token per line: id, a tab, its vocabulary text\n"
           "                    (\\n \\t \\r \\\\ \\xNN escaped)\n"
           "  --count           print the number of tokens; the time taken goes to stderr\n"
           "  --no-bos          do not add the BOS/EOS tokens the model asks for\n"
           "  --parse-special   control-token texts in the input (e.g. <|im_end|>) become\n"
           "                    those tokens; by default they are tokenized as text\n");
}

int qe_cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *file = NULL;
    int mode = 0, no_bos = 0, parse = 0; /* mode: 0 ids, 1 pieces, 2 count */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            tokenize_help();
            return QE_EXIT_OK;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--text") || !strcmp(a, "--file")) {
            if (i + 1 >= argc)
                return qe_cli_usage_error("tokenize", "%s needs a value", a);
            const char **dst = a[2] == 'm' ? &model : a[2] == 't' ? &text : &file;
            *dst = argv[++i];
        } else if (!strcmp(a, "--ids")) {
            mode = 0;
        } else if (!strcmp(a, "--pieces")) {
            mode = 1;
        } else if (!strcmp(a, "--count")) {
            mode = 2;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = 1;
        } else if (!strcmp(a, "--parse-special")) {
            parse = 1;
        } else {
            return qe_cli_usage_error("tokenize", "unknown option '%s'", a);
        }
    }
    if (!model)
        return qe_cli_usage_error("tokenize", "--model is required");
    if (text && file)
        return qe_cli_usage_error("tokenize", "give --text or --file, not both");

    qe_tokenizer *tok = NULL;
    qe_tokenizer_ids ids = {0};
    char *buf = NULL;
    size_t len = 0;
    qe_status st = qe_tokenizer_open(model, &tok);
    if (!st && text) {
        len = strlen(text);
    } else if (!st) {
        st = read_all(file, &buf, &len);
        text = buf;
    }
    if (st)
        goto done;
    unsigned flags = (no_bos ? 0 : QE_TOK_ADD_SPECIAL) | (parse ? QE_TOK_PARSE_SPECIAL : 0);
    double t0 = qe_now();
    if ((st = qe_tokenizer_encode(tok, text, len, flags, &ids)))
        goto done;
    double dt = qe_now() - t0;
    if (mode == 2) {
        printf("%zu\n", ids.n);
        fprintf(stderr, "qeval tokenize: %zu bytes -> %zu tokens in %.3f s (%s, %s)\n", len, ids.n, dt,
                qe_tokenizer_kind_name(tok), qe_tokenizer_pre_name(tok));
    } else if (mode == 1) {
        for (size_t i = 0; i < ids.n; i++) {
            size_t n;
            const char *s = qe_tokenizer_token_text(tok, ids.v[i], &n);
            printf("%d\t", ids.v[i]);
            print_escaped(s, n);
            putchar('\n');
        }
    } else {
        for (size_t i = 0; i < ids.n; i++)
            printf(i ? " %d" : "%d", ids.v[i]);
        putchar('\n');
    }
    if (fflush(stdout) != 0)
        st = qe_fail(QE_EIO, "stdout: write error: %s", strerror(errno));
done:
    qe_tokenizer_ids_free(&ids);
    free(buf);
    qe_tokenizer_close(tok);
    return qe_cli_report("tokenize", st);
}

static void detokenize_help(void)
{
    printf("usage: qeval detokenize --model PATH [--ids \"1 2 3\" | --file F] [--special]\n\n"
           "Prints the text token ids stand for, byte for byte (no newline is added).\n"
           "Ids are separated by spaces, commas or newlines; without --ids or --file\n"
           "they are read from stdin. Control tokens (BOS, EOS, ...) print nothing\n"
           "unless --special. When the tokenizer adds a dummy-prefix space (SentencePiece\n"
           "style) the leading space of the text is removed, so detokenize undoes\n"
           "tokenize.\n\n"
           "  --model PATH   a .gguf file, a tokenizer.json, or a model directory\n"
           "  --ids LIST     the ids\n"
           "  --file F       read the ids from file F\n"
           "  --special      print the text of control tokens too\n");
}

/* Parse ids; on a bad one, report where (argument or file line). */
static int parse_ids(const char *s, const char *origin, qe_tokenizer_ids *ids, int *bad_exit)
{
    size_t line = 1;
    const char *p = s;
    while (*p) {
        if (*p == ' ' || *p == '\t' || *p == ',' || *p == '\r' || *p == '\n') {
            line += *p == '\n';
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX ||
            (*end && *end != ' ' && *end != '\t' && *end != ',' && *end != '\r' && *end != '\n')) {
            int k = 0;
            while (p[k] && p[k] != ' ' && p[k] != '\n' && k < 20)
                k++;
            if (origin) {
                fprintf(stderr, "qeval detokenize: %s: line %zu: '%.*s' is not a token id\n", origin, line, k, p);
                *bad_exit = QE_EXIT_INPUT;
            } else {
                *bad_exit = qe_cli_usage_error("detokenize", "--ids: '%.*s' is not a token id", k, p);
            }
            return -1;
        }
        if (qe_tokenizer_ids_push(ids, (int32_t)v)) {
            *bad_exit = qe_cli_report("detokenize", QE_ENOMEM);
            return -1;
        }
        p = end;
    }
    return 0;
}

int qe_cmd_detokenize(int argc, char **argv)
{
    const char *model = NULL, *list = NULL, *file = NULL;
    int special = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            detokenize_help();
            return QE_EXIT_OK;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--ids") || !strcmp(a, "--file")) {
            if (i + 1 >= argc)
                return qe_cli_usage_error("detokenize", "%s needs a value", a);
            const char **dst = a[2] == 'm' ? &model : a[2] == 'i' ? &list : &file;
            *dst = argv[++i];
        } else if (!strcmp(a, "--special")) {
            special = 1;
        } else {
            return qe_cli_usage_error("detokenize", "unknown option '%s'", a);
        }
    }
    if (!model)
        return qe_cli_usage_error("detokenize", "--model is required");
    if (list && file)
        return qe_cli_usage_error("detokenize", "give --ids or --file, not both");

    int rc = QE_EXIT_OK;
    qe_tokenizer *tok = NULL;
    qe_tokenizer_ids ids = {0};
    char *buf = NULL, *text = NULL;
    size_t len = 0;
    qe_status st = qe_tokenizer_open(model, &tok);
    if (!st && !list) {
        st = read_all(file, &buf, &len);
        list = buf;
    }
    if (st) {
        rc = qe_cli_report("detokenize", st);
        goto done;
    }
    if (parse_ids(list, buf ? (file ? file : "stdin") : NULL, &ids, &rc))
        goto done;
    for (size_t i = 0; i < ids.n; i++)
        if (ids.v[i] < 0 || (uint32_t)ids.v[i] >= qe_tokenizer_n_vocab(tok)) {
            fprintf(stderr, "qeval detokenize: id %zu (%d) is out of range: the vocabulary has %u tokens\n", i,
                    ids.v[i], qe_tokenizer_n_vocab(tok));
            rc = buf ? QE_EXIT_INPUT : QE_EXIT_USAGE;
            goto done;
        }
    if ((st = qe_tokenizer_decode(tok, ids.v, ids.n, special ? QE_TOK_RENDER_SPECIAL : 0, &text, &len))) {
        rc = qe_cli_report("detokenize", st);
        goto done;
    }
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0)
        rc = qe_cli_report("detokenize", qe_fail(QE_EIO, "stdout: write error: %s", strerror(errno)));
done:
    free(text);
    free(buf);
    qe_tokenizer_ids_free(&ids);
    qe_tokenizer_close(tok);
    return rc;
}
