/* testutil.c - see testutil.h. */
#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <check.h>

#include "cl.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *qe_test_data(const char *rel)
{
    static char bufs[8][4096];
    static int k;
    const char *root = getenv("QEVAL_DATA");
    char *b = bufs[k++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", root && *root ? root : "../shared/data", rel);
    return b;
}

char *qe_test_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/qeval-test-XXXXXX", t && *t ? t : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void qe_test_rmtree(const char *dir)
{
    if (dir)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *qe_test_write(const char *dir, const char *name, const void *data, size_t n)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    if (!p)
        return NULL;
    snprintf(p, len, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        if (f)
            fclose(f);
        free(p);
        return NULL;
    }
    fclose(f);
    return p;
}

static char *cl_cache;
static char *cl_saved_env;
static qe_cl *cl_shared;

void qe_test_cl_setup(void)
{
    const char *v = getenv("QEVAL_CACHE_DIR");
    cl_saved_env = v ? strdup(v) : NULL;
    cl_cache = qe_test_tmpdir();
    ck_assert_ptr_nonnull(cl_cache);
    setenv("QEVAL_CACHE_DIR", cl_cache, 1);
}

void qe_test_cl_teardown(void)
{
    qe_cl_close(cl_shared);
    cl_shared = NULL;
    qe_test_rmtree(cl_cache);
    free(cl_cache);
    cl_cache = NULL;
    if (cl_saved_env)
        setenv("QEVAL_CACHE_DIR", cl_saved_env, 1);
    else
        unsetenv("QEVAL_CACHE_DIR");
    free(cl_saved_env);
    cl_saved_env = NULL;
}

qe_cl *qe_test_cl(void)
{
    if (!cl_shared)
        ck_assert_msg(qe_cl_open(NULL, 0, &cl_shared) == QE_OK, "qe_cl_open: %s", qe_errmsg());
    return cl_shared;
}

const char *qe_test_cl_cache_dir(void) { return cl_cache; }
