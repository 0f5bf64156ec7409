/* runner.c - runs every Check suite (tests/check_<module>.c) and writes TAP.
 *
 * usage: run_tests [SUITE...] [-x SUITE...]
 *   no SUITE: all suites; -x SUITE leaves that suite out (repeatable).
 * Environment: QEVAL_DATA (shared test data), CK_FORK=no to run tests in one
 * process under gdb or valgrind. Exit status 1 if any test fails. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QE_SUITE(name) Suite *name##_suite(void);
#include "suites.inc"
#undef QE_SUITE

struct entry {
    const char *name;
    Suite *(*make)(void);
};

static const struct entry suites[] = {
#define QE_SUITE(name) {#name, name##_suite},
#include "suites.inc"
#undef QE_SUITE
    {NULL, NULL}};

int main(int argc, char **argv)
{
    SRunner *sr = NULL;
    int n_include = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-x"))
            i++;
        else
            n_include++;
    }
    for (const struct entry *e = suites; e->name; e++) {
        int want = n_include == 0, excluded = 0;
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "-x")) {
                excluded |= i + 1 < argc && !strcmp(argv[i + 1], e->name);
                i++;
            } else {
                want |= strcmp(argv[i], e->name) == 0;
            }
        }
        if (!want || excluded)
            continue;
        if (!sr)
            sr = srunner_create(e->make());
        else
            srunner_add_suite(sr, e->make());
    }
    if (!sr) {
        fprintf(stderr, "run_tests: no suite matched\n");
        return 2;
    }
    srunner_set_tap(sr, "-");
    srunner_run_all(sr, CK_SILENT);
    int failed = srunner_ntests_failed(sr), run = srunner_ntests_run(sr);
    srunner_free(sr);
    printf("# unit tests: %d passed, %d failed\n", run - failed, failed);
    return failed ? 1 : 0;
}
