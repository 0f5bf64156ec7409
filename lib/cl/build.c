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

/* ---- wgmma: kernels/wgmma.cl's comments as instructions ---- */

/* A growing text. */
typedef struct text {
    char *p;
    size_t n, cap;
    int oom;
} text;

static void text_add(text *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    if (t->n + n + 1 > t->cap) {
        size_t cap = (t->n + n + 1) * 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
}

static void text_str(text *t, const char *s) { text_add(t, s, strlen(s)); }

/* The marker's instruction, with its operands (rest, len bytes: the rest
 * of the comment's line) where it takes some; 0 if rest is not what the
 * marker needs. Every wgmma accumulates (scale-d true, from a predicate
 * the block sets) and reads A and B unscaled and untransposed (K-major). */
static int wgmma_line(text *t, int marker, const char *rest, size_t len)
{
    static const char *const plain[] = {"fence.proxy.async.shared::cta;",
                                        "wgmma.fence.sync.aligned;",
                                        "wgmma.commit_group.sync.aligned;"};
    while (len && (rest[len - 1] == ' ' || rest[len - 1] == '\t' || rest[len - 1] == '\r'))
        len--;
    while (len && (*rest == ' ' || *rest == '\t')) {
        rest++;
        len--;
    }
    text_str(t, "\t");
    if (marker < 3) {
        if (len)
            return 0;
        text_str(t, plain[marker]);
    } else if (marker == 3) { /* wait: the groups that may stay pending */
        if (len != 1 || rest[0] < '0' || rest[0] > '7')
            return 0;
        text_str(t, "wgmma.wait_group.sync.aligned ");
        text_add(t, rest, 1);
        text_str(t, ";");
    } else { /* SS "{d x 64}, a-desc, b-desc"; RS "{d x 64}, {a x 4}, b-desc" */
        if (!len || rest[0] != '{' || memchr(rest, ';', len))
            return 0;
        text_str(t, "{ .reg .pred wgp; .reg .b32 wgs; mov.b32 wgs, 1; setp.ne.b32 wgp, wgs, 0; "
                    "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 ");
        text_add(t, rest, len);
        /* then scale-d, scale-a, scale-b and the transposes: A's (SS only) and B's */
        text_str(t, marker == 4 ? ", wgp, 1, 1, 0, 0; }" : ", wgp, 1, 1, 0; }");
    }
    text_str(t, "\n");
    return 1;
}

qe_status qe_cl_wgmma_patch(const char *ptx, size_t n, char **out, size_t *out_n)
{
    /* longer markers first where one is another's prefix */
    static const char *const markers[] = {"// @WGPROXY", "// @WGFENCE",    "// @WGCOMMIT",
                                          "// @WGWAIT",  "// @WGMMA128SS", "// @WGMMA128RS"};
    const int n_markers = (int)(sizeof markers / sizeof markers[0]);
    text t = {0};
    int target = 0, version_ok = 0;
    *out = NULL;
    *out_n = 0;
    for (size_t at = 0; at < n;) {
        const char *line = ptx + at;
        const char *nl = memchr(line, '\n', n - at);
        size_t len = nl ? (size_t)(nl - line) : n - at, next = at + len + (nl != NULL);
        int mk = -1;
        const char *hit = NULL;
        for (int m = 0; m < n_markers && mk < 0; m++) {
            const size_t ml = strlen(markers[m]);
            for (const char *q = line; q + ml <= line + len; q++)
                if (memcmp(q, markers[m], ml) == 0) {
                    mk = m;
                    hit = q + ml;
                    break;
                }
        }
        /* directives sit at the start of their line */
        int major = 0, minor = 0;
        if (mk < 0 && len > 8 && memcmp(line, ".version", 8) == 0 &&
            sscanf(line, ".version %d.%d", &major, &minor) == 2)
            version_ok = major >= 8;
        if (mk >= 0) {
            if (!wgmma_line(&t, mk, hit, (size_t)(line + len - hit))) {
                free(t.p);
                return qe_fail(QE_ECORRUPT, "wgmma patch: byte %zu: %s with operands it cannot take",
                               at, markers[mk]);
            }
        } else if (len >= 13 && memcmp(line, ".target sm_90", 13) == 0) {
            /* sm_90 becomes sm_90a; a compiler that already says sm_90a
               keeps it; sm_900 and the like are other targets */
            const size_t at_a = 13 + (len > 13 && line[13] == 'a');
            const char end = at_a < len ? line[at_a] : '\n';
            target = end == '\n' || end == ',' || end == ' ' || end == '\r';
            if (target) {
                text_str(&t, ".target sm_90a");
                text_add(&t, line + at_a, len - at_a);
                text_str(&t, "\n");
            } else {
                text_add(&t, line, next - at);
            }
        } else {
            text_add(&t, line, next - at);
        }
        at = next;
    }
    if (t.oom) {
        free(t.p);
        return qe_fail(QE_ENOMEM, "wgmma patch: out of memory");
    }
    if (!target || !version_ok) {
        free(t.p);
        return qe_fail(QE_EUNSUPPORTED, "wgmma patch: the program's binary is not PTX %s",
                       !target ? "for .target sm_90" : "of ISA 8.0 or later");
    }
    *out = t.p;
    *out_n = t.n;
    return QE_OK;
}

qe_status qe_cl_build_ex(qe_cl *cl, const char *const *names, size_t n_names,
                         const char *options, unsigned flags, cl_program *out)
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
    key = fnv_str(key, flags & QE_CL_WGMMA ? "wgmma" : ""); /* the patched binary */
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
        if (!(flags & QE_CL_QUIET))
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
    size_t n = 0;
    if (dir || (flags & QE_CL_WGMMA)) /* for the cache, or to patch */
        bin = program_binary(p, &n);
    if (flags & QE_CL_WGMMA) {
        /* the program again, from its PTX with the wgmma steps in */
        char *patched = NULL;
        size_t pn = 0;
        st = bin ? qe_cl_wgmma_patch((const char *)bin, n, &patched, &pn)
                 : qe_fail(QE_EUNSUPPORTED, "%s: the program has no binary to patch", srcs[0].name);
        clReleaseProgram(p);
        p = NULL;
        if (st == QE_OK) {
            const unsigned char *pb = (const unsigned char *)patched;
            cl_int bin_status = CL_SUCCESS;
            p = clCreateProgramWithBinary(cl->ctx, 1, &cl->info.device, &pn, &pb, &bin_status,
                                          &err);
            if (!p || err != CL_SUCCESS || bin_status != CL_SUCCESS)
                st = qe_cl_fail_call("clCreateProgramWithBinary (wgmma)", srcs[0].name,
                                     err != CL_SUCCESS ? err : bin_status);
            else if ((err = clBuildProgram(p, 1, &cl->info.device, options, NULL, NULL)) !=
                     CL_SUCCESS) {
                free(log);
                log = build_log(cl, p);
                st = qe_fail(QE_ECL, "clBuildProgram(%s, wgmma, options '%s'): %s; build log: %.640s",
                             srcs[0].name, options, qe_cl_errstr(err), log ? log : "");
            }
            if (st != QE_OK && p) {
                clReleaseProgram(p);
                p = NULL;
            }
        }
        free(bin);
        bin = (unsigned char *)patched;
        n = pn;
        if (st != QE_OK)
            goto done;
    }
    if (dir && bin)
        cache_write(dir, path, key, bin, n);
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

qe_status qe_cl_build_wgmma(qe_cl *cl, const char *const *names, size_t n_names,
                            const char *options, cl_program *out)
{
    return qe_cl_build_ex(cl, names, n_names, options, QE_CL_WGMMA, out);
}

void qe_cl_program_free(cl_program p)
{
    if (p)
        clReleaseProgram(p);
}
