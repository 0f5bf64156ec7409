/* merge.c - `qeval merge --db OUT IN...`: fold results databases written by
 * separate processes (Slurm array tasks, other machines) into one.
 *
 * Threading: single-threaded command.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "store.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qeval merge --db OUT [-k] [IN.db...]\n\n"
            "Adds the rows of each IN database that OUT lacks (OUT is created if needed;\n"
            "the inputs are only read). Models, datasets, runs, chunks, tokens and bench\n"
            "rows are keyed by content hashes, so the union never holds duplicates and\n"
            "merging the same input twice adds nothing. A chunk present in both with\n"
            "different numbers (two devices) keeps OUT's rows and is reported as a\n"
            "conflict. Prints one line per input: rows added and conflicts (and, on a\n"
            "terminal, a progress line over its token rows while it copies). Without\n"
            "inputs it only creates OUT, or upgrades it to this qeval's schema.\n\n"
            "  --db OUT          the database to merge into\n"
            "  -k, --keep-going  after an input that is refused (exit 3's cases), go on\n"
            "                    with the next; the exit status is still 3\n\n"
            "Typical Slurm use: each array task runs\n"
            "  qeval run JOB.ini --db results/part-$SLURM_ARRAY_TASK_ID.db \\\n"
            "      --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\n"
            "then: qeval merge --db results/qeval.db results/part-*.db\n\n"
            "exit: 0 ok; 1 a database cannot be read or written (the inputs merged before\n"
            "it stay merged; merging stops); 2 usage; 3 an input is not a qeval database,\n"
            "or its tables or rows are not ones this qeval writes (nothing of it is merged;\n"
            "merging stops there unless --keep-going).\n");
}

int qe_cmd_merge(int argc, char **argv)
{
    const char *db = NULL;
    int n_in = 0, keep_going = 0;
    char **in = argv; /* inputs are compacted in place: in[k] <= argv[i] */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return QE_EXIT_OK;
        } else if (!strcmp(argv[i], "-k") || !strcmp(argv[i], "--keep-going")) {
            keep_going = 1;
        } else if (!strcmp(argv[i], "--db")) {
            if (i + 1 >= argc)
                return qe_cli_usage_error("merge", "--db needs a path");
            db = argv[++i];
        } else if (argv[i][0] == '-') {
            return qe_cli_usage_error("merge", "unknown option '%s'", argv[i]);
        } else {
            in[n_in++] = argv[i];
        }
    }
    if (!db)
        return qe_cli_usage_error("merge", "--db OUT is required");
    qe_store *st;
    qe_status r = qe_store_open(db, 0, 0, &st);
    if (r != QE_OK)
        return qe_cli_report("merge", r);
    qe_status refused = QE_OK; /* an input refused earlier (--keep-going) */
    for (int i = 0; i < n_in && r == QE_OK; i++) {
        qe_store_merge_stats s;
        r = qe_store_merge(st, in[i], isatty(STDERR_FILENO) ? QE_STORE_MERGE_PROGRESS : 0, &s);
        if (keep_going && qe_cli_exit_code(r) == QE_EXIT_INPUT) {
            /* nothing of it was merged (one transaction): name it, go on */
            qe_cli_report("merge", r);
            refused = r;
            r = QE_OK;
            continue;
        }
        if (r == QE_OK)
            printf("%s: +%" PRId64 " runs, +%" PRId64 " chunks, +%" PRId64 " tokens, +%" PRId64
                   " models, +%" PRId64 " datasets, +%" PRId64 " sessions, +%" PRId64
                   " kld, +%" PRId64 " bench, %" PRId64 " conflicts\n", in[i], s.runs, s.chunks,
                   s.tokens, s.models, s.datasets, s.sessions, s.kld, s.bench, s.conflicts);
        if (r == QE_OK && (s.gen_runs || s.gen_prompts))
            printf("%s: +%" PRId64 " generation runs, +%" PRId64 " generated prompts\n", in[i],
                   s.gen_runs, s.gen_prompts);
    }
    qe_store_close(st);
    if (r == QE_OK && refused != QE_OK)
        return qe_cli_exit_code(refused); /* each was reported as it came */
    return qe_cli_report("merge", r);
}
