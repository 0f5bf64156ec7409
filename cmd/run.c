/* run.c - `qeval run JOB.ini`: parse the job, then hand it to the runner
 * (lib/runner.h), which hashes models and datasets, creates the run rows,
 * evaluates the chunks not stored yet through `run_evaluator`, and records
 * everything through its writer thread.
 *
 * Threading: the command thread runs the evaluator; the runner starts the
 * writer thread.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl.h"
#include "cli.h"
#include "engine.h"
#include "jobeval.h"
#include "job.h"
#include "log.h"
#include "runner.h"

/* The evaluator: one perplexity run, its chunks to the sink
 * (lib/jobeval.h joins the runner and the perplexity loop). */
static const qe_runner_eval_fn run_evaluator = qe_jobeval_run;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qeval run JOB.ini [--db PATH] [--shard I/N] [--dry-run] [--device CHOICE]\n"
            "                 [--profile] [-q]\n\n"
            "Evaluates every run of a job file (jobs/demo.ini shows the format; README.md\n"
            "\"Job files\" describes it) into a results database: perplexity per chunk,\n"
            "per-token log-probs and top-k, KL-divergence against the reference run,\n"
            "timings. Models and datasets are keyed by the SHA-256 of their content and\n"
            "runs by a hash of their configuration, so an interrupted job resumes where\n"
            "it stopped (stored chunks are skipped) and databases merge (qeval merge).\n\n"
            "  --db PATH      write here instead of the job's output\n"
            "  --shard I/N    evaluate only runs i with i %% N == I (0 <= I < N), e.g.\n"
            "                 --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\n"
            "  --dry-run      hash and list the runs (key, stored chunks); write nothing\n"
            "  --device C     device choice (as in qeval devices; default QEVAL_DEVICE),\n"
            "                 or 'ref' for the plain-C double-precision reference\n"
            "  --profile      also store each perplexity run's device time per kernel\n"
            "                 (OpenCL profiling events) in the timings table, phase\n"
            "                 'kernel:<name>', n_calls = launches\n"
            "  -q, --quiet    no progress line\n\n"
            "exit: 0 ok; 1 runtime failure (database, device, I/O); 2 usage; 3 invalid\n"
            "job file, model or dataset (the message names file and line or row).\n");
}

static void note(void *ud, const qe_runner_task *t, int evaluate)
{
    (void)ud;
    const qe_store_resume *s = t->stored;
    char chunks[64];
    if (s->n_chunks >= 0)
        snprintf(chunks, sizeof chunks, "%" PRId64 "/%" PRId64, s->n_done, s->n_chunks);
    else
        snprintf(chunks, sizeof chunks, "%" PRId64 "/?", s->n_done);
    char kv[40];
    if (strcmp(t->run->kv_k, t->run->kv_v))
        snprintf(kv, sizeof kv, "%s/%s", t->run->kv_k, t->run->kv_v);
    else
        snprintf(kv, sizeof kv, "%s", t->run->kv_k);
    printf("%4zu  %-16s %-16s %-7s %-9s %-12.12s %-12.12s %11s  %s\n", t->index,
           t->model_spec->name, t->dataset_spec->name, t->run->weights, kv, t->run_key,
           t->ref_run_key ? t->ref_run_key : "-", chunks,
           evaluate ? "evaluate" : t->stored->n_chunks >= 0 ? "stored" : "planned");
    fflush(stdout);
}

static void gen_note(void *ud, const qe_runner_gen_task *t, int generate)
{
    (void)ud;
    char kv[40], prompts[64];
    if (strcmp(t->run->kv_k, t->run->kv_v))
        snprintf(kv, sizeof kv, "%s/%s", t->run->kv_k, t->run->kv_v);
    else
        snprintf(kv, sizeof kv, "%s", t->run->kv_k);
    snprintf(prompts, sizeof prompts, "%zu/%zu", t->n_done, t->n_prompts);
    printf("gen%-2zu %-16s %-16s %-7s %-9s %-12.12s %-12.12s %11s  %s\n", t->index,
           t->model_spec->name, t->prompts_spec->name, t->run->weights, kv, t->gen_key,
           t->ref_gen_key ? t->ref_gen_key : "-", prompts, generate ? "generate" : "stored");
    fflush(stdout);
}

int qe_cmd_run(int argc, char **argv)
{
    const char *job_path = NULL, *db = NULL, *device = NULL;
    int dry = 0, quiet = 0, profile = 0, shard_i = 0, shard_n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return QE_EXIT_OK;
        } else if (!strcmp(argv[i], "--dry-run")) {
            dry = 1;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = 1;
        } else if (!strcmp(argv[i], "--profile")) {
            profile = 1;
        } else if (!strcmp(argv[i], "--db") || !strcmp(argv[i], "--shard") ||
                   !strcmp(argv[i], "--device")) {
            if (i + 1 >= argc)
                return qe_cli_usage_error("run", "%s needs a value", argv[i]);
            const char *v = argv[++i];
            if (!strcmp(argv[i - 1], "--db")) {
                db = v;
            } else if (!strcmp(argv[i - 1], "--device")) {
                device = v;
            } else {
                char end;
                if (sscanf(v, "%d/%d%c", &shard_i, &shard_n, &end) != 2 || shard_n < 1 ||
                    shard_i < 0 || shard_i >= shard_n)
                    return qe_cli_usage_error("run", "--shard '%s': expected I/N with 0 <= I < N",
                                              v);
            }
        } else if (argv[i][0] == '-') {
            return qe_cli_usage_error("run", "unknown option '%s'", argv[i]);
        } else if (job_path) {
            return qe_cli_usage_error("run", "one job file at a time");
        } else {
            job_path = argv[i];
        }
    }
    if (!job_path)
        return qe_cli_usage_error("run", "a job file is required");
    /* A full disk or `ulimit -f` should fail a write, not kill the process
     * mid-transaction (SQLite rolls back; the database stays valid). */
    signal(SIGXFSZ, SIG_IGN);

    qe_job *job;
    qe_status r = qe_job_parse_file(job_path, 0, &job);
    if (r != QE_OK)
        return qe_cli_report("run", r);
    /* The device recorded with the runs: the one the evaluator will open. */
    char dev_name[256] = "C reference (double)", driver[128] = "-";
    const char *gemm = NULL; /* the C reference: recorded as "-" */
    if (!dry && !(device && !strcmp(device, "ref"))) {
        qe_cl_device_info *list = NULL;
        size_t n_dev = 0, pick = 0;
        r = qe_cl_list(&list, &n_dev);
        if (r == QE_OK)
            r = qe_cl_select(list, n_dev, device, &pick);
        if (r == QE_OK) {
            snprintf(dev_name, sizeof dev_name, "%s", list[pick].name);
            snprintf(driver, sizeof driver, "%s", list[pick].driver_version);
        }
        qe_cl_list_free(list, n_dev);
        /* The matmul kernels the engines will pick there (QEVAL_GEMM, else
         * the device's probe), recorded with the session. */
        qe_cl *cl = NULL;
        qe_gemm g = QE_GEMM_F32;
        if (r == QE_OK)
            r = qe_cl_open(device, 0, &cl);
        if (r == QE_OK)
            r = qe_engine_gemm_resolve(cl, QE_GEMM_AUTO, &g);
        qe_cl_close(cl);
        gemm = qe_gemm_name(g);
        if (r != QE_OK) {
            qe_job_free(job);
            return qe_cli_report("run", r);
        }
    }
    qe_jobeval_opts eo = {device, !quiet, NULL, profile};
    qe_runner_opts o = {run_evaluator, &eo, note, dry, db, dev_name, driver,
                        shard_i, shard_n, 0, qe_jobeval_generate, gen_note, 0, gemm};
    printf("job %s: %zu runs, %zu generation runs, %zu models, %zu datasets -> %s\n", job->name,
           job->n_runs, job->n_gen_runs, job->n_models, job->n_datasets, db ? db : job->output);
    printf("   #  %-16s %-16s %-7s %-9s %-12s %-12s %11s  %s\n", "model", "dataset", "weights",
           "kv", "run", "reference", "chunks", "");
    qe_runner_stats s;
    r = qe_runner_run(job, &o, &s);
    if (r == QE_OK)
        printf("%zu runs: %zu evaluated, %zu already complete, %" PRId64 " chunks written\n",
               s.runs, s.evaluated, s.complete, s.chunks_sent);
    if (r == QE_OK && job->n_gen_runs)
        printf("%zu generation runs: %zu generated, %zu already complete, %" PRId64
               " prompts written\n", s.gen_runs, s.gen_evaluated, s.gen_complete, s.prompts_sent);
    qe_job_free(job);
    return qe_cli_report("run", r);
}
