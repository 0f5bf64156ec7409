/* fuzz_job.c - libFuzzer harness for job files (`make fuzz`), which users
 * write by hand and pass between machines.
 *
 * Each input is parsed by qe_job_parse_string (model and dataset files not
 * required to exist; run with QEVAL_DATA set, as jobs/ uses it). A rejected
 * input must carry a one-line message that names the file ("fuzz:LINE: ..."
 * or "fuzz: ..."); an accepted one must keep job.h's promises: limits on
 * every number, an output database, a name and a non-empty path on every
 * model and dataset, an expanded sweep whose indices are in range and whose
 * every variant names an earlier reference run. Broken promises trap, so
 * libFuzzer records them as crashes.
 *
 * Threading: libFuzzer's single thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "job.h"

static void check_runs(const qe_job *j, const qe_job_run *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        CHECK(r[i].model >= 0 && (size_t)r[i].model < j->n_models);
        CHECK(r[i].dataset >= 0 && (size_t)r[i].dataset < j->n_datasets);
        CHECK(r[i].weights && r[i].kv_k && r[i].kv_v);
        CHECK(r[i].ref == -1 || (r[i].ref >= 0 && (size_t)r[i].ref < i));
        if (r[i].ref >= 0)
            CHECK(r[r[i].ref].ref == -1 && r[r[i].ref].model == r[i].model &&
                  r[r[i].ref].dataset == r[i].dataset);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qe_job *j = NULL;
    qe_status s = qe_job_parse_string((const char *)data, size, "fuzz", QE_JOB_NO_FILE_CHECK, &j);
    if (s != QE_OK) {
        fuzz_rejected(s, j, "fuzz");
        return 0;
    }
    CHECK(j->name && j->name[0] && j->output && j->output[0]);
    CHECK(j->n_ctx >= 4 && j->n_ctx <= 1048576);
    CHECK(j->n_seq >= 1 && j->n_seq <= 4096);
    CHECK(j->top_k >= 0 && j->top_k <= 64);
    CHECK(j->workers >= 1 && j->workers <= 256);
    CHECK(j->max_chunks >= 0);
    for (size_t i = 0; i < j->n_models; i++)
        CHECK(j->models[i].name && j->models[i].name[0] && j->models[i].path &&
              j->models[i].path[0]);
    for (size_t i = 0; i < j->n_datasets; i++)
        CHECK(j->datasets[i].name && j->datasets[i].name[0] && j->datasets[i].path &&
              j->datasets[i].path[0]);
    check_runs(j, j->runs, j->n_runs);
    check_runs(j, j->gen_runs, j->n_gen_runs);
    if (j->generate.enabled) {
        CHECK(j->generate.prompts >= 0 && (size_t)j->generate.prompts < j->n_datasets);
        CHECK(j->generate.n_slots >= 1 && j->generate.n_slots <= 4096);
        for (size_t i = 0; i < j->generate.n_stop; i++)
            CHECK(j->generate.stop[i] != NULL);
    }
    qe_job_free(j);
    return 0;
}
