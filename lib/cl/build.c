/* build.c - OpenCL programs: kernel sources, the binary cache, building.
 *
 * Sources come from the table embedded at build time (kernels.h) or, with
 * $QEVAL_KERNEL_DIR set, from <dir>/NAME.cl (a name the directory lacks
 * still comes from the table, with a debug log).
 *
 * Cache file layout (native byte order; a cache belongs to one machine):
 *   0  8  magic "QECLBIN\0"
 *   8  4  u32 format version (CACHE_VERSION)
 *  12  4  u32 zero
 *  16  8  u64 key (the one in the file name; guards against renamed files)
 *  24  8  u64 binary size n (at most MAX_BINARY)
 *  32  8  u64 FNV-1a 64 of the binary
 *  40  n  the program binary as clGetProgramInfo(CL_PROGRAM_BINARIES) gave it
 * The file must be exactly 40 + n bytes. Anything else, or a binary the
 * driver will not build, is a "reject": the program is built from source and
 * the file replaced.
 *
 * Threading: any number of threads may build on distinct qe_cl handles; the
 * statistics are behind a mutex and cache files are replaced atomically
 * (temp file + rename), so concurrent processes are safe too.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels.h"
#include "log.h"

#define CACHE_VERSION 1u
#define HEADER_BYTES 40u
#define MAX_BINARY (1ull << 30)       /* a cache file larger than this is corrupt */
#define MAX_SOURCE (16u << 20)        /* a kernel source larger than this is refused */
#define MAX_NAMES 16u

static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static qe_cl_cache_stats stats;

static void count(uint64_t *field)
{
    pthread_mutex_lock(&stats_mu);
    (*field)++;
    pthread_mutex_unlock(&stats_mu);
}

void qe_cl_cache_stats_get(qe_cl_cache_stats *out)
{
    pthread_mutex_lock(&stats_mu);
    *out = stats;
    pthread_mutex_unlock(&stats_mu);
}

void qe_cl_cache_stats_reset(void)
{
    pthread_mutex_lock(&stats_mu);
    memset(&stats, 0, sizeof stats);
    pthread_mutex_unlock(&stats_mu);
}

/* ---- FNV-1a 64 ---- */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Hash a length, then the bytes, so ("ab","c") and ("a","bc") differ. */
static uint64_t fnv_field(uint64_t h, const void *data, size_t n)
{
    uint64_t len = n;
    return fnv(fnv(h, &len, sizeof len), data, n);
}

static uint64_t fnv_str(uint64_t h, const char *s) { return fnv_field(h, s, strlen(s)); }

/* ---- sources ---- */

typedef struct source {
    char name[64];   /* "util.cl" */
    const char *text;
    size_t len;
    char *owned;     /* malloc'ed text read from disk, else NULL */
} source;

/* Read <dir>/<file> into src. QE_ENOTFOUND if it does not exist. */
static qe_status read_disk(const char *dir, source *src)
{
    qe_status st = QE_OK;
    char path[4096];
    FILE *f = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, src->name);
    f = fopen(path, "rb");
    if (!f) {
        st = errno == ENOENT ? QE_ENOTFOUND
                             : qe_fail(QE_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = qe_fail(QE_EIO, "%s: not a regular file", path);
        goto done;
    }
    if ((unsigned long long)sb.st_size > MAX_SOURCE) {
        st = qe_fail(QE_ERANGE, "%s: %lld bytes; kernel sources are limited to %u bytes", path,
                     (long long)sb.st_size, MAX_SOURCE);
        goto done;
    }
    src->owned = malloc((size_t)sb.st_size + 1);
    if (!src->owned) {
        st = qe_fail(QE_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t n = fread(src->owned, 1, (size_t)sb.st_size, f);
    if (n != (size_t)sb.st_size || ferror(f)) {
        st = qe_fail(QE_EIO, "%s: short read (%zu of %lld bytes)", path, n, (long long)sb.st_size);
        goto done;
    }
    src->owned[n] = '\0';
    if (memchr(src->owned, '\0', n)) {
        st = qe_fail(QE_ECORRUPT, "%s: offset %zu: NUL byte in OpenCL source", path,
                     (size_t)((char *)memchr(src->owned, '\0', n) - src->owned));
        goto done;
    }
    src->text = src->owned;
    src->len = n;
    qe_log_debug("kernel source %s read from %s", src->name, path);
done:
    if (st != QE_OK) {
        free(src->owned);
        src->owned = NULL;
    }
    if (f)
        fclose(f);
    return st;
}

/* Find kernel source `name` ("util" or "util.cl"). */
static qe_status load_source(const char *name, source *src)
{
    memset(src, 0, sizeof *src);
    size_t len = name ? strlen(name) : 0;
    int has_ext = len > 3 && !strcmp(name + len - 3, ".cl");
    if (len == 0 || len + (has_ext ? 0 : 3) >= sizeof src->name || strchr(name, '/') ||
        name[0] == '.')
        return qe_fail(QE_EINVAL, "bad kernel source name '%s'", name ? name : "(null)");
    snprintf(src->name, sizeof src->name, "%s%s", name, has_ext ? "" : ".cl");
    const char *dir = getenv("QEVAL_KERNEL_DIR");
    if (dir && *dir) {
        qe_status st = read_disk(dir, src);
        if (st != QE_ENOTFOUND)
            return st;
        qe_log_debug("kernel source %s not in QEVAL_KERNEL_DIR=%s; using the embedded copy",
                     src->name, dir);
    }
    for (size_t i = 0; i < qe_kernel_n_srcs; i++)
        if (!strcmp(qe_kernel_srcs[i].name, src->name)) {
            src->text = qe_kernel_srcs[i].src;
            src->len = qe_kernel_srcs[i].len;
            return QE_OK;
        }
    return qe_fail(QE_ENOTFOUND, "no kernel source '%s' (neither embedded nor in "
                                 "QEVAL_KERNEL_DIR)", src->name);
}

/* ---- cache location and files ---- */

static int cache_disabled(void)
{
    const char *v = getenv("QEVAL_NO_CACHE");
    return v && *v && strcmp(v, "0") != 0;
}

char *qe_cl_cache_dir(void)
{
    const char *v;
    char buf[4096];
    if (cache_disabled())
        return NULL;
    if ((v = getenv("QEVAL_CACHE_DIR")) && *v)
        snprintf(buf, sizeof buf, "%s", v);
    else if ((v = getenv("XDG_CACHE_HOME")) && *v)
        snprintf(buf, sizeof buf, "%s/qeval", v);
    else if ((v = getenv("HOME")) && *v)
        snprintf(buf, sizeof buf, "%s/.cache/qeval", v);
    else
        return NULL;
    return strdup(buf);
}

/* mkdir -p; 0 on success. */
static int make_dirs(const char *dir)
{
    char tmp[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, dir, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Read and validate a cache file; on success *bin (malloc'ed) holds *n bytes.
 * Returns 0 ok, 1 absent, -1 present but unusable (debug-logged). */
static int cache_read(const char *path, uint64_t key, unsigned char **bin, size_t *n)
{
    int rc = -1;
    unsigned char hdr[HEADER_BYTES], *buf = NULL;
    FILE *f = fopen(path, "rb");
    *bin = NULL;
    if (!f) {
        rc = errno == ENOENT ? 1 : -1;
        if (rc < 0)
            qe_log_debug("cache %s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    uint32_t version;
    uint64_t fkey, size, sum;
    if (fread(hdr, 1, sizeof hdr, f) != sizeof hdr) {
        qe_log_debug("cache %s: offset 0: header truncated", path);
        goto done;
    }
    memcpy(&version, hdr + 8, 4);
    memcpy(&fkey, hdr + 16, 8);
    memcpy(&size, hdr + 24, 8);
    memcpy(&sum, hdr + 32, 8);
    if (memcmp(hdr, "QECLBIN", 8) != 0 || version != CACHE_VERSION || fkey != key) {
        qe_log_debug("cache %s: offset 0: bad magic, version or key", path);
        goto done;
    }
    if (size == 0 || size > MAX_BINARY) {
        qe_log_debug("cache %s: offset 24: binary size %llu out of range", path,
                     (unsigned long long)size);
        goto done;
    }
    buf = malloc((size_t)size);
    if (!buf)
        goto done;
    if (fread(buf, 1, (size_t)size, f) != size || fgetc(f) != EOF) {
        qe_log_debug("cache %s: offset %u: expected exactly %llu binary bytes", path,
                     HEADER_BYTES, (unsigned long long)size);
        goto done;
    }
    if (fnv(FNV_OFFSET, buf, (size_t)size) != sum) {
        qe_log_debug("cache %s: offset %u: checksum mismatch", path, HEADER_BYTES);
        goto done;
    }
    *bin = buf;
    *n = (size_t)size;
    buf = NULL;
    rc = 0;
done:
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

/* Write a cache file atomically. Failures are logged, never returned. */
static void cache_write(const char *dir, const char *path, uint64_t key, const unsigned char *bin,
                        size_t n)
{
    static unsigned seq;
    char tmp[4200];
    int fd = -1;
    if (make_dirs(dir) != 0) {
        qe_log_debug("cache %s: cannot create: %s", dir, strerror(errno));
        return;
    }
    pthread_mutex_lock(&stats_mu);
    unsigned s = seq++;
    pthread_mutex_unlock(&stats_mu);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), s);
    unsigned char hdr[HEADER_BYTES] = {'Q', 'E', 'C', 'L', 'B', 'I', 'N', 0};
    uint32_t version = CACHE_VERSION;
    uint64_t size = n, sum = fnv(FNV_OFFSET, bin, n);
    memcpy(hdr + 8, &version, 4);
    memcpy(hdr + 16, &key, 8);
    memcpy(hdr + 24, &size, 8);
    memcpy(hdr + 32, &sum, 8);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        qe_log_debug("cache %s: cannot create: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    int ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr && fwrite(bin, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        qe_log_debug("cache %s: cannot write: %s", path, strerror(errno));
        remove(tmp);
        return;
    }
    count(&stats.stores);
    qe_log_debug("cache %s: stored %zu bytes", path, n);
}

/* The program's binary for its one device (malloc'ed), or NULL. */
static unsigned char *program_binary(cl_program p, size_t *n)
{
    size_t size = 0;
    cl_int err = clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL);
    if (err != CL_SUCCESS || size == 0 || size > MAX_BINARY) {
        qe_log_debug("clGetProgramInfo(CL_PROGRAM_BINARY_SIZES): %s, size %zu",
                     qe_cl_errstr(err), size);
        return NULL;
    }
    unsigned char *bin = malloc(size);
    if (!bin)
        return NULL;
    unsigned char *bins[1] = {bin};
    err = clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL);
    if (err != CL_SUCCESS) {
        qe_log_debug("clGetProgramInfo(CL_PROGRAM_BINARIES): %s", qe_cl_errstr(err));
        free(bin);
        return NULL;
    }
    *n = size;
    return bin;
}

/* Try to make a built program from a cached binary; NULL on any failure. */
static cl_program from_binary(qe_cl *cl, const unsigned char *bin, size_t n, const char *options,
                              const char *path)
{
    cl_int err, bin_status = CL_SUCCESS;
    cl_program p = clCreateProgramWithBinary(cl->ctx, 1, &cl->info.device, &n, &bin, &bin_status,
                                             &err);
    if (!p || err != CL_SUCCESS || bin_status != CL_SUCCESS) {
        qe_log_debug("cache %s: clCreateProgramWithBinary: %s / %s", path, qe_cl_errstr(err),
                     qe_cl_errstr(bin_status));
        if (p)
            clReleaseProgram(p);
        return NULL;
    }
    err = clBuildProgram(p, 1, &cl->info.device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        qe_log_debug("cache %s: clBuildProgram from binary: %s", path, qe_cl_errstr(err));
        clReleaseProgram(p);
        return NULL;
    }
    return p;
}

/* ---- building ---- */

static char *build_log(qe_cl *cl, cl_program p)
{
    size_t len = 0;
    if (clGetProgramBuildInfo(p, cl->info.device, CL_PROGRAM_BUILD_LOG, 0, NULL, &len) !=
        CL_SUCCESS)
        return NULL;
    char *log = malloc(len + 1);
    if (!log)
        return NULL;
    if (clGetProgramBuildInfo(p, cl->info.device, CL_PROGRAM_BUILD_LOG, len, log, NULL) !=
        CL_SUCCESS)
        len = 0;
    log[len] = '\0';
    while (len > 0 && (log[len - 1] == '\n' || log[len - 1] == ' ' || log[len - 1] == '\0'))
        log[--len] = '\0';
    return log;
}

qe_status qe_cl_build_ex(qe_cl *cl, const char *const *names, size_t n_names,
                         const char *options, int quiet, cl_program *out)
{
    qe_status st = QE_OK;
    source srcs[MAX_NAMES];
    size_t loaded = 0;
    char *dir = NULL, *path = NULL, *log = NULL;
    unsigned char *bin = NULL;
    cl_program p = NULL;
    cl_int err;
    *out = NULL;
    if (!options)
        options = "";
    if (n_names == 0 || n_names > MAX_NAMES) {
        st = qe_fail(QE_EINVAL, "a program needs 1 to %u kernel sources, got %zu", MAX_NAMES,
                     n_names);
        goto done;
    }
    for (; loaded < n_names; loaded++)
        if ((st = load_source(names[loaded], &srcs[loaded])) != QE_OK)
            goto done;

    uint64_t key = FNV_OFFSET;
    uint32_t version = CACHE_VERSION;
    key = fnv_field(key, &version, sizeof version);
    for (size_t i = 0; i < n_names; i++) {
        key = fnv_str(key, srcs[i].name);
        key = fnv_field(key, srcs[i].text, srcs[i].len);
    }
    key = fnv_str(key, options);
    key = fnv_str(key, cl->info.platform_name);
    key = fnv_str(key, cl->info.platform_version);
    key = fnv_str(key, cl->info.name);
    key = fnv_str(key, cl->info.device_version);
    key = fnv_str(key, cl->info.driver_version);

    dir = qe_cl_cache_dir();
    if (dir) {
        size_t plen = strlen(dir) + sizeof srcs[0].name + 32;
        path = malloc(plen);
        if (!path) {
            st = qe_fail(QE_ENOMEM, "out of memory");
            goto done;
        }
        int base = (int)(strlen(srcs[0].name) - 3); /* without ".cl" */
        snprintf(path, plen, "%s/%.*s-%016llx.bin", dir, base, srcs[0].name,
                 (unsigned long long)key);
        size_t n = 0;
        int rc = cache_read(path, key, &bin, &n);
        if (rc == 0 && (p = from_binary(cl, bin, n, options, path)) != NULL) {
            count(&stats.hits);
            qe_log_debug("cache %s: hit", path);
            goto done;
        }
        if (rc != 1)
            count(&stats.rejects);
        count(&stats.misses);
        free(bin);
        bin = NULL;
    }

    const char *texts[MAX_NAMES];
    size_t lens[MAX_NAMES];
    for (size_t i = 0; i < n_names; i++) {
        texts[i] = srcs[i].text;
        lens[i] = srcs[i].len;
    }
    p = clCreateProgramWithSource(cl->ctx, (cl_uint)n_names, texts, lens, &err);
    if (!p) {
        st = qe_cl_fail_call("clCreateProgramWithSource", srcs[0].name, err);
        goto done;
    }
    err = clBuildProgram(p, 1, &cl->info.device, options, NULL, NULL);
    log = build_log(cl, p);
    if (err != CL_SUCCESS) {
        const char *l = log && *log ? log : "(empty build log)";
        if (!quiet)
            qe_log_warn("build log of %s (options '%s') on %s:\n%s", srcs[0].name, options,
                        cl->info.name, l);
        /* one line, as every message (status.h): the log's newlines as \x0a */
        st = qe_fail(QE_ECL, "clBuildProgram(%s, options '%s'): %s; build log: %.640s",
                     srcs[0].name, options, qe_cl_errstr(err), l);
        clReleaseProgram(p);
        p = NULL;
        goto done;
    }
    if (log && *log)
        qe_log_debug("build log of %s (options '%s'):\n%s", srcs[0].name, options, log);
    if (dir) {
        size_t n = 0;
        bin = program_binary(p, &n);
        if (bin)
            cache_write(dir, path, key, bin, n);
    }
done:
    if (st == QE_OK)
        *out = p;
    for (size_t i = 0; i < loaded; i++)
        free(srcs[i].owned);
    free(bin);
    free(log);
    free(path);
    free(dir);
    return st;
}

qe_status qe_cl_build(qe_cl *cl, const char *const *names, size_t n_names, const char *options,
                      cl_program *out)
{
    return qe_cl_build_ex(cl, names, n_names, options, 0, out);
}

qe_status qe_cl_build1(qe_cl *cl, const char *name, const char *options, cl_program *out)
{
    return qe_cl_build_ex(cl, &name, 1, options, 0, out);
}

void qe_cl_program_free(cl_program p)
{
    if (p)
        clReleaseProgram(p);
}
