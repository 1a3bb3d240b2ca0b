/* gsbench.c - runs one benchmark workload against the public API and
 * prints one JSON line.
 *
 *   gsbench WORKLOAD [--quick] [--workers N] [key=value ...]
 *   gsbench --list | --help
 *
 * Keys are the workload's parameters in lower case (see --help), plus
 * workers=N. --quick divides the counts that set a workload's length by
 * 100. Exit status: 0 when the workload's check passed, 1 when it failed
 * ("check":"FAIL: ..."), 2 for a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static const bench_workload workloads[] = {
    {"call_rtt", "W1 synchronous call round trip from an outside thread", w1_call_rtt,
     {{"n", 200000, true}, {"warmup", 10000, true}, {"timeout_ms", 5000, false}}, {NULL}},
    {"cast_fanin", "W2 P producer servers cast M incr each to one counter", w2_cast_fanin,
     {{"p", 4, false}, {"m", 1000000, true}, {"batch", 1000, false}}, {NULL}},
    {"cast_fanin_threads", "W2b as W2 with P plain pthreads as producers", w2b_cast_fanin_threads,
     {{"p", 4, false}, {"m", 1000000, true}}, {NULL}},
    {"ring", "W3 one token passed H times around a ring of R servers", w3_ring,
     {{"r", 1000, false}, {"h", 2000000, true}}, {NULL}},
    {"ring_multi", "W4 T tokens of K hops each around a ring of R servers", w4_ring_multi,
     {{"r", 1000, false}, {"t", 100, false}, {"k", 20000, true}}, {NULL}},
    {"pingpong", "W5 K ping/pong pairs, R round trips each", w5_pingpong,
     {{"k", 1000, false}, {"r", 1000, true}}, {NULL}},
    {"spawn", "W6 start, cast to and stop S counter servers; memory per server", w6_spawn,
     {{"s", 1000000, true}}, {"stop=cast|async|sync"}},
#ifndef GS_BENCH_NO_TIMERS
    {"timers", "W7 T one-shot timers, every second one cancelled at once", w7_timers,
     {{"t", 1000000, true}, {"age_ms", 0, false}, {"stamp_every", 16, false}}, {NULL}},
    {"timer_guard", "W7b arm a timer and cancel it at once, N times (a guard timeout)", w7b_timer_guard,
     {{"n", 2000000, true}, {"delay_ms", 1000, false}, {"settle_ms", 50, false}}, {NULL}},
    {"timer_holders", "W7c H quiet threads hold a far timer each; timer thread kept busy by a 1 ms interval",
     w7c_timer_holders, {{"holders", 1000, false}, {"window_ms", 2000, false}}, {NULL}},
    {"call_timeout", "W8 C callers: slow call times out after 10 ms, then a fast call", w8_call_timeout,
     {{"c", 1000, true}, {"warm", 1, false}}, {"callers=servers|threads"}},
#endif
    {"server_call", "W9 gs_call between servers: hot round trip, K pairs x M calls, vs cast round trips",
     w9_server_call, {{"n", 1000000, true}, {"warmup", 10000, true}, {"k", 1000, false}, {"m", 1000, true},
                      {"timeout_ms", 5000, false}, {"rtt_workers", 1, false}}, {NULL}},
};
#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: gsbench WORKLOAD [--quick] [--workers N] [key=value ...]\n"
               "       gsbench --list\n\nworkloads and their parameters (defaults):\n");
    for (size_t i = 0; i < NWORKLOADS; i++) {
        const bench_workload *w = &workloads[i];
        fprintf(f, "  %-19s %s\n  %19s", w->name, w->title, "");
        for (int k = 0; k < BENCH_MAX_KEYS && w->keys[k].key; k++)
            fprintf(f, " %s=%lld%s", w->keys[k].key, (long long)w->keys[k].def, w->keys[k].quick ? "*" : "");
        for (int k = 0; k < 4 && w->str_opts[k]; k++)
            fprintf(f, " %s", w->str_opts[k]);
        fprintf(f, "\n");
    }
    fprintf(f, "\n  * divided by 100 with --quick; key=a|b: a word, the first is the default.\n"
#ifdef GS_BENCH_NO_TIMERS
               "  (built without the timer workloads: GS_BENCH_TIMERS=OFF)\n"
#endif
    );
}

/* The workload's string option named by a[0..klen), as a NUL-terminated
 * key (static storage), or NULL. */
static const char *str_opt(const bench_workload *w, const char *a, size_t klen)
{
    static char keys[4][32];
    for (int k = 0; k < 4 && w->str_opts[k]; k++) {
        const char *eq = strchr(w->str_opts[k], '=');
        size_t len = eq ? (size_t)(eq - w->str_opts[k]) : strlen(w->str_opts[k]);
        if (len == klen && len < sizeof keys[k] && strncmp(a, w->str_opts[k], klen) == 0) {
            memcpy(keys[k], a, klen);
            keys[k][klen] = '\0';
            return keys[k];
        }
    }
    return NULL;
}

static bool parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < NWORKLOADS; i++)
            printf("%s\n", workloads[i].name);
        return 0;
    }
    const bench_workload *w = NULL;
    for (size_t i = 0; i < NWORKLOADS; i++)
        if (strcmp(argv[1], workloads[i].name) == 0)
            w = &workloads[i];
    if (w == NULL) {
        fprintf(stderr, "gsbench: unknown workload '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }

    bench b = {.w = w};
    int nkeys = 0;
    while (nkeys < BENCH_MAX_KEYS && w->keys[nkeys].key)
        nkeys++;
    for (int k = 0; k < nkeys; k++)
        b.val[k] = w->keys[k].def;
    int64_t workers = 0;

    /* --quick first, so that explicit key=value wins whatever the order */
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--quick") == 0)
            b.quick = true;
    if (b.quick)
        for (int k = 0; k < nkeys; k++)
            if (w->keys[k].quick)
                b.val[k] = b.val[k] / 100 > 0 ? b.val[k] / 100 : 1;

    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0)
            continue;
        if (strcmp(a, "--workers") == 0) {
            if (i + 1 >= argc || !parse_int(argv[i + 1], &workers)) {
                fprintf(stderr, "gsbench: --workers needs a number\n");
                return 2;
            }
            i++;
            continue;
        }
        const char *eq = strchr(a, '=');
        if (eq == NULL || eq == a) {
            fprintf(stderr, "gsbench: bad argument '%s' (want key=value)\n", a);
            return 2;
        }
        size_t klen = (size_t)(eq - a);
        int64_t v;
        bool is_int = parse_int(eq + 1, &v);
        if (klen == 7 && strncmp(a, "workers", 7) == 0) {
            if (!is_int) {
                fprintf(stderr, "gsbench: workers needs a number\n");
                return 2;
            }
            workers = v;
            continue;
        }
        int found = -1;
        const char *sopt;
        for (int k = 0; k < nkeys; k++)
            if (strlen(w->keys[k].key) == klen && strncmp(a, w->keys[k].key, klen) == 0)
                found = k;
        if (found >= 0 && is_int) {
            b.val[found] = v;
        } else if (found < 0 && b.nstr < 4 && (sopt = str_opt(w, a, klen)) != NULL) {
            b.str_key[b.nstr] = sopt;
            b.str_val[b.nstr++] = eq + 1;
        } else {
            fprintf(stderr, "gsbench: workload %s has no parameter '%.*s' (or its value is not a number)\n",
                    w->name, (int)klen, a);
            return 2;
        }
    }
    if (workers < 0 || workers > GS_MAX_WORKERS) {
        fprintf(stderr, "gsbench: workers must be 0..%d\n", GS_MAX_WORKERS);
        return 2;
    }

    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    b.workers = workers > 0 ? (unsigned)workers : (unsigned)(cpus > 0 ? (cpus > GS_MAX_WORKERS ? GS_MAX_WORKERS : cpus) : 1);
    gs_runtime_opts opts = {.workers = (unsigned)workers};
    int rc = gs_runtime_start(&b.rt, &opts);
    if (rc != GS_OK) {
        fprintf(stderr, "gsbench: gs_runtime_start: %s\n", gs_strerror(rc));
        return 1;
    }

    bench_set_str(&b, "runtime", "genserver");
    bench_set_str(&b, "workload", w->name);
    bench_set_int(&b, "workers", b.workers);
    if (b.quick)
        bench_set_int(&b, "quick", 1);
    /* the machine may be shared: say how busy it was when we started */
    FILE *la = fopen("/proc/loadavg", "r");
    double load1;
    if (la != NULL) {
        if (fscanf(la, "%lf", &load1) == 1)
            bench_set_num(&b, "load1", load1);
        fclose(la);
    }

    int64_t steal0 = bench_steal_ms();
    w->run(&b);
    /* On a VM, time the host took from our CPUs during the run: a
     * lateness tail that coincides with steal is the host's, not ours. */
    int64_t steal1 = bench_steal_ms();
    if (steal0 >= 0 && steal1 >= steal0)
        bench_set_int(&b, "steal_ms", steal1 - steal0);

    /* the record is printed before the runtime is stopped, so that a
     * result is seen even if shutdown were to misbehave */
    if (b.json_len == 0)
        bench_set_str(&b, "note", "empty");
    bench_print(&b, stdout);
    fflush(stdout);

    rc = gs_runtime_stop(b.rt);
    if (rc != GS_OK)
        fprintf(stderr, "gsbench: gs_runtime_stop: %s\n", gs_strerror(rc));
    bool failed = bench_failed(&b);
    free(b.json);
    free(b.fail);
    return failed ? 1 : 0;
}
