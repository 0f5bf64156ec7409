/* devices.c - `qeval devices`: the OpenCL platforms and devices qeval can use,
 * their limits and probed capabilities, and which one qeval would pick.
 * Single-threaded. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl.h"
#include "cli.h"
#include "log.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qeval devices [--json] [--device CHOICE] [--no-probe] [--verbose]\n\n"
            "Lists every OpenCL device with its memory, compute units, work-group size,\n"
            "driver and the capabilities qeval probes by compiling small kernels\n"
            "(half storage, fp16 arithmetic, subgroups, NVIDIA inline PTX shfl and mma).\n"
            "'cache' is the global memory cache the driver reports (NVIDIA's is not the\n"
            "L2 size: 4.1 MiB on an H200). '*' marks the device qeval would use.\n\n"
            "options:\n"
            "  --json            machine-readable output on stdout\n"
            "  --device CHOICE   mark this choice instead of $QEVAL_DEVICE / the default:\n"
            "                    an index, 'gpu', 'cpu', or part of a platform/device name\n"
            "  --no-probe        skip the capability probes (no kernels are built)\n"
            "  --verbose         debug messages (cache hits, probe failures) on stderr\n\n"
            "Exit status: 0 devices listed; 1 no OpenCL platform or device, or the device\n"
            "choice matches nothing (the list is still printed); 2 usage error.\n");
}

static const char *human(uint64_t b, char *buf, size_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

/* Probe device i; 0 on success, else a message is in qe_errmsg(). */
static int probe_one(const qe_cl_device_info *d, qe_cl_caps *caps)
{
    char idx[32];
    qe_cl *cl = NULL;
    snprintf(idx, sizeof idx, "%d", d->index);
    qe_status st = qe_cl_open(idx, 0, &cl);
    if (st == QE_OK)
        st = qe_cl_probe(cl, caps);
    qe_cl_close(cl);
    return st == QE_OK ? 0 : -1;
}

static const char *yn(int probed, int v) { return !probed ? "?" : v ? "yes" : "no"; }

static void print_table(const qe_cl_device_info *list, size_t n, long def, const qe_cl_caps *caps,
                        const int *probed)
{
    char g[32], a[32], l[32], c[32];
    printf("  %-2s %-28s %-36s %-4s %10s %10s %9s %10s %4s %5s  %-18s %s\n", "#", "platform",
           "device", "type", "global", "max alloc", "local", "cache", "CUs", "wg", "driver",
           "OpenCL C");
    for (size_t i = 0; i < n; i++) {
        const qe_cl_device_info *d = &list[i];
        printf("%c %-2d %-28.28s %-36.36s %-4.4s %10s %10s %9s %10s %4u %5zu  %-18.18s %s\n",
               (long)i == def ? '*' : ' ', d->index, d->platform_name, d->name, d->type_str,
               human(d->global_mem, g, sizeof g), human(d->max_alloc, a, sizeof a),
               human(d->local_mem, l, sizeof l), human(d->global_cache, c, sizeof c),
               d->compute_units, d->max_wg_size, d->driver_version, d->c_version);
    }
    if (!caps)
        return;
    printf("\n  %-2s %-12s %-5s %-10s %-9s %-8s %-6s\n", "#", "half-store", "fp16", "subgroups",
           "ptx-shfl", "ptx-mma", "wgmma");
    for (size_t i = 0; i < n; i++) {
        char sg[24];
        if (probed[i] && caps[i].subgroups)
            snprintf(sg, sizeof sg, "yes (%d)", caps[i].subgroup_size);
        else
            snprintf(sg, sizeof sg, "%s", yn(probed[i], 0));
        printf("%c %-2d %-12s %-5s %-10s %-9s %-8s %-6s\n", (long)i == def ? '*' : ' ',
               list[i].index, yn(probed[i], caps[i].half_storage), yn(probed[i], caps[i].fp16), sg,
               yn(probed[i], caps[i].ptx_shfl), yn(probed[i], caps[i].ptx_mma),
               yn(probed[i], caps[i].wgmma));
    }
}

static json_t *caps_json(const qe_cl_caps *c)
{
    return json_pack("{s:b, s:b, s:b, s:i, s:b, s:b, s:b}", "half_storage", c->half_storage,
                     "fp16", c->fp16, "subgroups", c->subgroups, "subgroup_size",
                     c->subgroup_size, "ptx_shfl", c->ptx_shfl, "ptx_mma", c->ptx_mma, "wgmma",
                     c->wgmma);
}

static json_t *device_json(const qe_cl_device_info *d, int is_default, const qe_cl_caps *caps)
{
    json_t *ext = json_array();
    char *copy = strdup(d->extensions);
    if (copy) {
        char *save = NULL;
        for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save))
            json_array_append_new(ext, json_string(t));
        free(copy);
    }
    json_t *o = json_pack(
        "{s:i, s:b, s:{s:i, s:s, s:s, s:s}, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, "
        "s:I, s:i, s:i, s:I, s:[I,I,I], s:i, s:o}",
        "index", d->index, "default", is_default, "platform", "index", d->platform_index, "name",
        d->platform_name, "vendor", d->platform_vendor, "version", d->platform_version, "name",
        d->name, "vendor", d->vendor, "vendor_id", (json_int_t)d->vendor_id, "type", d->type_str,
        "driver_version", d->driver_version, "device_version", d->device_version,
        "opencl_c_version", d->c_version, "global_mem", (json_int_t)d->global_mem, "max_alloc",
        (json_int_t)d->max_alloc, "local_mem", (json_int_t)d->local_mem, "global_cache",
        (json_int_t)d->global_cache, "compute_units",
        (int)d->compute_units, "clock_mhz", (int)d->clock_mhz, "max_work_group_size",
        (json_int_t)d->max_wg_size, "max_work_item_sizes", (json_int_t)d->max_wi_sizes[0],
        (json_int_t)d->max_wi_sizes[1], (json_int_t)d->max_wi_sizes[2], "mem_base_align",
        (int)d->mem_base_align, "extensions", ext);
    if (o)
        json_object_set_new(o, "capabilities", caps ? caps_json(caps) : json_null());
    return o;
}

int qe_cmd_devices(int argc, char **argv)
{
    int json = 0, probe = 1, rc = QE_EXIT_FAIL;
    const char *choice = NULL;
    qe_cl_device_info *list = NULL;
    qe_cl_caps *caps = NULL;
    int *probed = NULL;
    json_t *root = NULL;
    size_t n = 0, def_idx = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return QE_EXIT_OK;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--no-probe")) {
            probe = 0;
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            qe_log_set_level(QE_LOG_VERBOSE);
        } else if (!strcmp(argv[i], "--device")) {
            if (i + 1 >= argc)
                return qe_cli_usage_error("devices", "--device needs a value");
            choice = argv[++i];
        } else {
            return qe_cli_usage_error("devices", "unexpected argument '%s'", argv[i]);
        }
    }
    qe_status st = qe_cl_list(&list, &n);
    if (st != QE_OK) {
        rc = qe_cli_report("devices", st);
        goto done;
    }
    if (n == 0) {
        fprintf(stderr, "qeval devices: OpenCL platforms exist but none has a usable device\n");
        goto done;
    }
    qe_status sel = qe_cl_select(list, n, choice, &def_idx);
    char sel_msg[1024];
    snprintf(sel_msg, sizeof sel_msg, "%s", qe_errmsg());
    long def = sel == QE_OK ? (long)def_idx : -1;
    if (probe) {
        caps = calloc(n, sizeof *caps);
        probed = calloc(n, sizeof *probed);
        if (!caps || !probed) {
            fprintf(stderr, "qeval devices: out of memory\n");
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            probed[i] = probe_one(&list[i], &caps[i]) == 0;
            if (!probed[i])
                fprintf(stderr, "qeval devices: device %zu: cannot probe: %s\n", i, qe_errmsg());
        }
    }
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, device_json(&list[i], (long)i == def,
                                                   probe && probed[i] ? &caps[i] : NULL));
        root = json_pack("{s:o, s:o}", "devices", arr, "default",
                         def >= 0 ? json_integer(def) : json_null());
        if (!root || json_dumpf(root, stdout, JSON_INDENT(2)) != 0) {
            fprintf(stderr, "qeval devices: cannot write JSON\n");
            goto done;
        }
        putchar('\n');
    } else {
        print_table(list, n, def, probe ? caps : NULL, probed);
        if (def >= 0)
            printf("\n* = the device qeval uses (choose with --device or QEVAL_DEVICE)\n");
    }
    if (sel != QE_OK) {
        fprintf(stderr, "qeval devices: %s\n", sel_msg);
        goto done;
    }
    rc = QE_EXIT_OK;
done:
    json_decref(root);
    free(probed);
    free(caps);
    qe_cl_list_free(list, n);
    return rc;
}
