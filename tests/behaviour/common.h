/* common.h - shared helpers for the genserver behaviour tests.
 *
 * Written only against the public headers (genserver.h, genserver/status.h).
 * Everything here is `static inline` so each test executable gets its own
 * copy. Helpers that assert (cr_assert*) must only be used on the test's
 * own thread; helpers meant for callbacks/worker threads never assert.
 */
#ifndef GS_BEHAVIOUR_COMMON_H
#define GS_BEHAVIOUR_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <genserver.h>

/* ------------------------------------------------------------------ */
/* Time                                                                */
/* ------------------------------------------------------------------ */

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t now_ms(void) { return now_ns() / 1000000LL; }

static inline void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* CPU time (user + system) consumed by the whole process, in seconds. */
static inline double proc_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Polls `*v` until it equals `want` or timeout_ms passes. */
static inline bool wait_int_eq(atomic_int *v, int want, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        if (atomic_load(v) == want)
            return true;
        if (now_ms() >= end)
            return false;
        sleep_ms(1);
    }
}

static inline bool wait_int_ge(atomic_int *v, int want, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        if (atomic_load(v) >= want)
            return true;
        if (now_ms() >= end)
            return false;
        sleep_ms(1);
    }
}

/* ------------------------------------------------------------------ */
/* Pseudo random numbers (deterministic)                               */
/* ------------------------------------------------------------------ */

static inline uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* ------------------------------------------------------------------ */
/* Runtime helpers (test thread only)                                  */
/* ------------------------------------------------------------------ */

static inline gs_runtime *rt_new(unsigned workers)
{
    gs_runtime *rt = NULL;
    gs_runtime_opts o;
    memset(&o, 0, sizeof o);
    o.workers = workers;
    int rc = gs_runtime_start(&rt, &o);
    cr_assert_eq(rc, GS_OK, "gs_runtime_start(workers=%u) returned %d (%s)", workers, rc,
                 gs_strerror(rc));
    cr_assert_not_null(rt, "gs_runtime_start returned GS_OK but no runtime");
    return rt;
}

static inline void rt_free(gs_runtime *rt)
{
    int rc = gs_runtime_stop(rt);
    cr_assert_eq(rc, GS_OK, "gs_runtime_stop returned %d (%s)", rc, gs_strerror(rc));
}

static inline gs_pid start_ok(gs_runtime *rt, const gs_server_ops *ops, const void *arg)
{
    gs_pid pid = GS_NOPID;
    int rc = gs_start(rt, ops, arg, &pid);
    cr_assert_eq(rc, GS_OK, "gs_start(%s) returned %d (%s)", ops && ops->name ? ops->name : "?",
                 rc, gs_strerror(rc));
    cr_assert_neq(pid, GS_NOPID, "gs_start returned GS_OK but pid is GS_NOPID");
    return pid;
}

static inline void stop_ok(gs_runtime *rt, gs_pid pid)
{
    int rc = gs_stop(rt, pid, GS_NORMAL, 10000);
    cr_assert_eq(rc, GS_OK, "gs_stop returned %d (%s)", rc, gs_strerror(rc));
}

/* gs_call with a 32/64-bit integer request and reply. */
static inline int call_i64(gs_runtime *rt, gs_pid pid, uint32_t tag, int64_t in, int64_t *out,
                           int timeout_ms)
{
    size_t len = 0;
    int64_t r = 0;
    int rc = gs_call(rt, pid, tag, &in, sizeof in, &r, sizeof r, &len, timeout_ms);
    if (rc == GS_OK && len != sizeof r)
        return 9999; /* never a status code: makes the mismatch visible */
    if (out)
        *out = r;
    return rc;
}

/* What a collector keeps of a timer's message (test_timers.c,
 * test_named_timers.c): value is the payload when it is one int64_t,
 * else -1; server tells collectors apart. */
typedef struct timer_record {
    int server;
    uint32_t tag;
    int64_t value;
    gs_pid sender;
    gs_timer timer;
    int64_t at_ns;
} timer_record;

static inline timer_record timer_record_of(const gs_msg *m, int server)
{
    timer_record r = {server, m->tag, -1, m->sender, m->timer, now_ns()};
    if (m->len == sizeof(int64_t))
        memcpy(&r.value, m->data, sizeof(int64_t));
    return r;
}

/* The timer records the timer thread holds (gs_runtime_stats.timers),
 * once it has looked at its inbox: a timer of 1 ms to `sink` (a server
 * that ignores it) wakes it, as timers far ahead and lazy cancels do not,
 * and is gone itself once it fires. */
static inline uint64_t timers_held_after_a_wake(gs_runtime *rt, gs_pid sink)
{
    cr_assert_eq(gs_send_after(rt, sink, 1, NULL, 0, 1, NULL), GS_OK);
    sleep_ms(20);
    gs_runtime_stats st;
    cr_assert_eq(gs_runtime_stats_get(rt, &st), GS_OK);
    return st.timers;
}

/* ------------------------------------------------------------------ */
/* Log capture (thread safe; usable as a gs_log_fn)                     */
/* ------------------------------------------------------------------ */

#define LOGCAP_MAX 512
#define LOGCAP_LINE 512

typedef struct logcap {
    pthread_mutex_t mu;
    int n;           /* lines stored */
    long total;      /* lines seen */
    long null_lines; /* lines that were NULL (a library bug) */
    long by_level[4];
    int level[LOGCAP_MAX];
    char line[LOGCAP_MAX][LOGCAP_LINE];
} logcap;

static inline void logcap_init(logcap *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
}

static inline void logcap_fn(void *user, int level, const char *line)
{
    logcap *c = (logcap *)user;
    pthread_mutex_lock(&c->mu);
    c->total++;
    if (level >= 0 && level < 4)
        c->by_level[level]++;
    if (!line) {
        c->null_lines++;
    } else if (c->n < LOGCAP_MAX) {
        c->level[c->n] = level;
        snprintf(c->line[c->n], LOGCAP_LINE, "%s", line);
        c->n++;
    }
    pthread_mutex_unlock(&c->mu);
}

/* Number of stored lines at `level` (-1: any) containing every non-NULL
 * needle. */
static inline int logcap_count(logcap *c, int level, const char *n1, const char *n2,
                               const char *n3, const char *n4)
{
    const char *needles[4] = {n1, n2, n3, n4};
    int hits = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n; i++) {
        if (level >= 0 && c->level[i] != level)
            continue;
        bool ok = true;
        for (int k = 0; k < 4 && ok; k++)
            if (needles[k] && !strstr(c->line[i], needles[k]))
                ok = false;
        if (ok)
            hits++;
    }
    pthread_mutex_unlock(&c->mu);
    return hits;
}

static inline long logcap_level_count(logcap *c, int level)
{
    pthread_mutex_lock(&c->mu);
    long v = c->by_level[level];
    pthread_mutex_unlock(&c->mu);
    return v;
}

static inline long logcap_total(logcap *c)
{
    pthread_mutex_lock(&c->mu);
    long v = c->total;
    pthread_mutex_unlock(&c->mu);
    return v;
}

static inline bool logcap_wait(logcap *c, int level, const char *n1, const char *n2,
                               const char *n3, const char *n4, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        if (logcap_count(c, level, n1, n2, n3, n4) > 0)
            return true;
        if (now_ms() >= end)
            return false;
        sleep_ms(2);
    }
}

/* Prints the captured lines to stderr (diagnostics on failure). */
static inline void logcap_dump(logcap *c, const char *why)
{
    pthread_mutex_lock(&c->mu);
    fprintf(stderr, "---- captured log (%s): %d stored, %ld seen ----\n", why, c->n, c->total);
    for (int i = 0; i < c->n; i++)
        fprintf(stderr, "  [%d] %s\n", c->level[i], c->line[i]);
    pthread_mutex_unlock(&c->mu);
}

static inline void logcap_destroy(logcap *c) { pthread_mutex_destroy(&c->mu); }

#endif /* GS_BEHAVIOUR_COMMON_H */
