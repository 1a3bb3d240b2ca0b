/* bench.h - the harness shared by the gsbench workloads.
 *
 * A workload is a function that gets a `bench`: its parameters (defaults,
 * --quick, key=value overrides), a started runtime, and a JSON record to
 * which it adds its keys in order. It records failed checks with
 * bench_expect(); gsbench prints the record as one JSON line and exits
 * non-zero if any check failed. Only the public API (<genserver.h>) is
 * used here and in every w*.c file.
 */
#ifndef GS_BENCH_H
#define GS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <genserver.h>

#define BENCH_MAX_KEYS 12

/* A parameter of a workload: its key on the command line (lower case),
 * its default, and whether --quick divides it by 100. */
typedef struct bench_key {
    const char *key;
    int64_t def;
    bool quick;
} bench_key;

typedef struct bench bench;

typedef struct bench_workload {
    const char *name;  /* the workload's name on the command line and in JSON */
    const char *title; /* one line for --help */
    void (*run)(bench *b);
    bench_key keys[BENCH_MAX_KEYS]; /* ends at the first NULL key */
    /* string-valued options (key=word), with their words for --help, e.g.
     * "stop=cast|async|sync"; the first is the default; ends at NULL */
    const char *str_opts[4];
} bench_workload;

struct bench {
    const bench_workload *w;
    gs_runtime *rt;
    unsigned workers; /* the number really used */
    bool quick;
    /* parameters: the workload's keys, then string-valued extras */
    int64_t val[BENCH_MAX_KEYS];
    const char *str_key[4];
    const char *str_val[4];
    int nstr;
    /* the JSON record being built (without braces) and the failures */
    char *json;
    size_t json_len, json_cap;
    char *fail;
    size_t fail_len, fail_cap;
    const char *status; /* replaces "ok" when set and nothing failed */
};

/* ---- parameters ---------------------------------------------------- */
int64_t bench_param(const bench *b, const char *key); /* aborts on an unknown key */
/* A string-valued option (key=word) or def when not given. */
const char *bench_param_str(const bench *b, const char *key, const char *def);

/* ---- clock --------------------------------------------------------- */
/* CLOCK_MONOTONIC in nanoseconds: the clock the runtime's deadlines use. */
int64_t bench_now_ns(void);
/* Any clock in nanoseconds (CPU time: CLOCK_THREAD_CPUTIME_ID, ...). */
int64_t bench_clock_ns(clockid_t clock);
void bench_sleep_ms(int ms);

/* ---- JSON record --------------------------------------------------- */
void bench_set_int(bench *b, const char *key, int64_t v);
void bench_set_num(bench *b, const char *key, double v);
void bench_set_str(bench *b, const char *key, const char *v);
/* ops, seconds, ops_per_sec. */
void bench_rate(bench *b, int64_t ops, int64_t elapsed_ns);
/* Sorts xs and sets p50_ns, p99_ns, p999_ns, max_ns (nearest rank). */
void bench_latencies(bench *b, int64_t *xs, size_t n);
int64_t bench_percentile(const int64_t *sorted, size_t n, int num, int den);
void bench_sort_i64(int64_t *xs, size_t n); /* ascending, for bench_percentile */

/* Prints the record and its "check" key as one JSON line. */
void bench_print(bench *b, FILE *f);

/* ---- checks -------------------------------------------------------- */
/* Records a failure (printf-style message) unless ok. Returns ok. */
bool bench_expect(bench *b, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool bench_failed(const bench *b);
/* For set-up steps: records "what: <gs_strerror(rc)>" and returns false
 * unless rc is GS_OK. */
bool bench_ok(bench *b, int rc, const char *what);

/* ---- memory -------------------------------------------------------- */
/* A "Key:   N kB" line of /proc/self/status (VmRSS, VmHWM), or -1. */
int64_t bench_status_kb(const char *key);
/* CPU time the hypervisor gave to others while this VM's CPUs wanted it
 * (steal), in ms summed over the CPUs since boot; -1 if unknown. */
int64_t bench_steal_ms(void);
/* CPU time so far of this process's threads whose name starts with
 * `prefix` (the runtime names its own: "gs-timer", "gs-worker-N"), in ns,
 * from /proc/self/task/N/schedstat; -1 if unknown. */
int64_t bench_threads_cpu_ns(const char *prefix);

/* ---- the timer thread's lateness --------------------------------------
 * How late the timer thread fired the timers it fired between two reads
 * of gs_timer_lateness_get (`before` and `after`): sets `<key>_p50_ns` and
 * `<key>_p99_ns` (an eighth above the true value at most, the histogram's
 * resolution) and `<key>_count`; nothing if it fired none. This is the
 * timer service's share of a timer's lateness, the rest being the time
 * its message waited for its server. */
void bench_set_fire_lateness(bench *b, const char *key, const gs_timer_lateness *before,
                             const gs_timer_lateness *after);

/* ---- the latch server ------------------------------------------------
 * Counts arrivals (casts, each with an optional int64 added to a sum) and
 * answers a waiting call once the count reaches its target: the way
 * workers tell the main thread that a workload has finished, without
 * polling. Replies with bench_latch_result. */
typedef struct bench_latch_result {
    int64_t count;
    int64_t sum;
} bench_latch_result;

enum { BENCH_LATCH_ARRIVE = 0x4C00, BENCH_LATCH_WAIT, BENCH_LATCH_PEEK };

int bench_latch_start(bench *b, gs_pid *out);
/* Casts one arrival (from anywhere; a callback usually). */
int bench_latch_arrive(gs_runtime *rt, gs_pid latch, int64_t add);
/* Waits until count >= target (timeout in ms or GS_INFINITY). */
int bench_latch_wait(gs_runtime *rt, gs_pid latch, int64_t target, int timeout_ms, bench_latch_result *out);
/* The count and sum now. */
int bench_latch_peek(gs_runtime *rt, gs_pid latch, bench_latch_result *out);

/* How long the main thread waits for a workload to finish before the
 * check fails (instead of hanging the suite). */
#define BENCH_COMPLETION_TIMEOUT_MS 300000

/* ---- the workloads ------------------------------------------------- */
void w1_call_rtt(bench *b);
void w2_cast_fanin(bench *b);
void w2b_cast_fanin_threads(bench *b);
void w3_ring(bench *b);
void w4_ring_multi(bench *b);
void w5_pingpong(bench *b);
void w6_spawn(bench *b);
#ifndef GS_BENCH_NO_TIMERS
void w7_timers(bench *b);
void w7b_timer_guard(bench *b);
void w7c_timer_holders(bench *b);
void w8_call_timeout(bench *b);
#endif
void w9_server_call(bench *b);

/* W3 and W4: `tokens` tokens of k hops each, injected at evenly spaced
 * servers of a ring of `servers` (w3_ring.c). */
void bench_ring(bench *b, int64_t servers, int64_t tokens, int64_t k);

#endif
