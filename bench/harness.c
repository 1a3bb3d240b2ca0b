/* harness.c - clock, percentiles, JSON record, checks, RSS and the latch
 * server shared by the gsbench workloads. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* ---- parameters ---------------------------------------------------- */

int64_t bench_param(const bench *b, const char *key)
{
    for (int i = 0; i < BENCH_MAX_KEYS && b->w->keys[i].key != NULL; i++)
        if (strcmp(b->w->keys[i].key, key) == 0)
            return b->val[i];
    fprintf(stderr, "gsbench: internal error: workload %s has no parameter %s\n", b->w->name, key);
    abort();
}

const char *bench_param_str(const bench *b, const char *key, const char *def)
{
    for (int i = 0; i < b->nstr; i++)
        if (strcmp(b->str_key[i], key) == 0)
            return b->str_val[i];
    return def;
}

/* ---- clock --------------------------------------------------------- */

int64_t bench_clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_now_ns(void)
{
    return bench_clock_ns(CLOCK_MONOTONIC);
}

void bench_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- JSON record --------------------------------------------------- */

static void grow(char **buf, size_t *len, size_t *cap, size_t more)
{
    if (*len + more + 1 <= *cap)
        return;
    size_t n = *cap ? *cap : 256;
    while (n < *len + more + 1)
        n *= 2;
    char *p = realloc(*buf, n);
    if (p == NULL) {
        fprintf(stderr, "gsbench: out of memory\n");
        exit(3);
    }
    *buf = p;
    *cap = n;
}

static void appendf(char **buf, size_t *len, size_t *cap, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    grow(buf, len, cap, (size_t)n);
    vsnprintf(*buf + *len, (size_t)n + 1, fmt, ap);
    *len += (size_t)n;
}

static void json_appendf(bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void json_appendf(bench *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    appendf(&b->json, &b->json_len, &b->json_cap, fmt, ap);
    va_end(ap);
}

/* Appends s as a JSON string (quotes and escapes). */
static void json_string(bench *b, const char *s)
{
    json_appendf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            json_appendf(b, "\\%c", *p);
        else if (*p < 0x20)
            json_appendf(b, "\\u%04x", *p);
        else
            json_appendf(b, "%c", *p);
    }
    json_appendf(b, "\"");
}

static void json_key(bench *b, const char *key)
{
    if (b->json_len > 0)
        json_appendf(b, ",");
    json_string(b, key);
    json_appendf(b, ":");
}

void bench_set_int(bench *b, const char *key, int64_t v)
{
    json_key(b, key);
    json_appendf(b, "%lld", (long long)v);
}

void bench_set_num(bench *b, const char *key, double v)
{
    json_key(b, key);
    if (v != v || v > 1e300 || v < -1e300)
        json_appendf(b, "null");
    else
        json_appendf(b, "%.6g", v);
}

void bench_set_str(bench *b, const char *key, const char *v)
{
    json_key(b, key);
    json_string(b, v);
}

void bench_rate(bench *b, int64_t ops, int64_t elapsed_ns)
{
    double s = (double)elapsed_ns / 1e9;
    bench_set_int(b, "ops", ops);
    bench_set_num(b, "seconds", s);
    bench_set_num(b, "ops_per_sec", s > 0 ? (double)ops / s : 0);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void bench_sort_i64(int64_t *xs, size_t n)
{
    qsort(xs, n, sizeof *xs, cmp_i64);
}

int64_t bench_percentile(const int64_t *sorted, size_t n, int num, int den)
{
    if (n == 0)
        return 0;
    /* nearest rank: the smallest value with at least num/den of the
     * samples at or below it */
    size_t rank = (size_t)(((unsigned long long)n * (unsigned)num + (unsigned)den - 1) / (unsigned)den);
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

void bench_latencies(bench *b, int64_t *xs, size_t n)
{
    qsort(xs, n, sizeof *xs, cmp_i64);
    bench_set_int(b, "p50_ns", bench_percentile(xs, n, 50, 100));
    bench_set_int(b, "p99_ns", bench_percentile(xs, n, 99, 100));
    bench_set_int(b, "p999_ns", bench_percentile(xs, n, 999, 1000));
    bench_set_int(b, "max_ns", n ? xs[n - 1] : 0);
}

void bench_print(bench *b, FILE *f)
{
    if (bench_failed(b)) {
        json_key(b, "check");
        json_appendf(b, "\"FAIL: ");
        size_t at = b->json_len;
        json_string(b, b->fail); /* escaped, with its own quotes */
        memmove(b->json + at, b->json + at + 1, b->json_len - at); /* drop the opening quote */
        b->json_len--;
    } else {
        bench_set_str(b, "check", b->status ? b->status : "ok");
    }
    fprintf(f, "{%s}\n", b->json);
}

/* ---- checks -------------------------------------------------------- */

bool bench_expect(bench *b, bool ok, const char *fmt, ...)
{
    if (ok)
        return true;
    if (b->fail_len > 0) {
        grow(&b->fail, &b->fail_len, &b->fail_cap, 2);
        memcpy(b->fail + b->fail_len, "; ", 3);
        b->fail_len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    appendf(&b->fail, &b->fail_len, &b->fail_cap, fmt, ap);
    va_end(ap);
    return false;
}

bool bench_failed(const bench *b)
{
    return b->fail_len > 0;
}

bool bench_ok(bench *b, int rc, const char *what)
{
    return bench_expect(b, rc == GS_OK, "%s: %s", what, gs_strerror(rc));
}

/* ---- memory -------------------------------------------------------- */

int64_t bench_status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    size_t klen = strlen(key);
    int64_t kb = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            kb = strtoll(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* ---- the machine ---------------------------------------------------- */

int64_t bench_steal_ms(void)
{
    /* /proc/stat's first line: cpu user nice system idle iowait irq
     * softirq steal ..., in clock ticks summed over the CPUs. */
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return -1;
    unsigned long long v[8];
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]);
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (n != 8 || hz <= 0)
        return -1;
    return (int64_t)(v[7] * 1000ull / (unsigned long long)hz);
}

int64_t bench_threads_cpu_ns(const char *prefix)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return -1;
    int64_t sum = 0;
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        bool named = fgets(comm, sizeof comm, f) != NULL && strncmp(comm, prefix, strlen(prefix)) == 0;
        fclose(f);
        if (!named)
            continue;
        /* schedstat: time on a CPU (ns), time waiting for one, slices. */
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        f = fopen(path, "r");
        unsigned long long ns;
        if (f != NULL && fscanf(f, "%llu", &ns) == 1) {
            sum += (int64_t)ns;
            found = true;
        }
        if (f != NULL)
            fclose(f);
    }
    closedir(d);
    return found ? sum : -1;
}

/* ---- the latch server ---------------------------------------------- */

typedef struct latch_state {
    bench_latch_result now;
    int64_t target;
    bool waiting;
    gs_from waiter;
} latch_state;

static int latch_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    latch_state *s = state;
    if (m->tag != BENCH_LATCH_ARRIVE)
        return GS_OK;
    s->now.count++;
    if (m->len == sizeof(int64_t))
        s->now.sum += *(const int64_t *)m->data;
    if (s->waiting && s->now.count >= s->target) {
        s->waiting = false;
        gs_reply(gs_ctx_runtime(ctx), s->waiter, &s->now, sizeof s->now);
    }
    return GS_OK;
}

static int latch_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    latch_state *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (m->tag == BENCH_LATCH_WAIT && m->len == sizeof(int64_t)) {
        int64_t target = *(const int64_t *)m->data;
        if (s->now.count >= target) {
            gs_reply(rt, from, &s->now, sizeof s->now);
            return GS_OK;
        }
        /* a previous waiter that timed out is simply replaced */
        s->target = target;
        s->waiting = true;
        s->waiter = from;
        return GS_NOREPLY;
    }
    gs_reply(rt, from, &s->now, sizeof s->now);
    return GS_OK;
}

static const gs_server_ops latch_ops = {
    .name = "bench_latch",
    .state_size = sizeof(latch_state),
    .handle_cast = latch_cast,
    .handle_call = latch_call,
};

int bench_latch_start(bench *b, gs_pid *out)
{
    return gs_start(b->rt, &latch_ops, NULL, out);
}

int bench_latch_arrive(gs_runtime *rt, gs_pid latch, int64_t add)
{
    return gs_cast(rt, latch, BENCH_LATCH_ARRIVE, &add, sizeof add);
}

int bench_latch_wait(gs_runtime *rt, gs_pid latch, int64_t target, int timeout_ms, bench_latch_result *out)
{
    return gs_call(rt, latch, BENCH_LATCH_WAIT, &target, sizeof target, out, sizeof *out, NULL, timeout_ms);
}

int bench_latch_peek(gs_runtime *rt, gs_pid latch, bench_latch_result *out)
{
    return gs_call(rt, latch, BENCH_LATCH_PEEK, NULL, 0, out, sizeof *out, NULL, 5000);
}

void bench_set_fire_lateness(bench *b, const char *key, const gs_timer_lateness *before,
                             const gs_timer_lateness *after)
{
    gs_timer_lateness d;
    memset(&d, 0, sizeof d);
    for (unsigned i = 0; i < GS_LATENESS_BUCKETS; i++) {
        d.buckets[i] = after->buckets[i] - before->buckets[i];
        d.fired += d.buckets[i];
    }
    if (d.fired == 0)
        return;
    d.max_ns = after->max_ns; /* the latest over the runtime's life: a bound for these */
    char name[64];
    snprintf(name, sizeof name, "%s_count", key);
    bench_set_int(b, name, (int64_t)d.fired);
    snprintf(name, sizeof name, "%s_p50_ns", key);
    bench_set_int(b, name, (int64_t)gs_timer_lateness_percentile(&d, 50, 100));
    snprintf(name, sizeof name, "%s_p99_ns", key);
    bench_set_int(b, name, (int64_t)gs_timer_lateness_percentile(&d, 99, 100));
}
