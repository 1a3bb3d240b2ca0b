/* w7_timers.c - W7: one-shot timers with cancellation.
 *
 * One collector server. The main thread schedules t timers with
 * gs_send_after, each delivering (index, deadline) to the collector's
 * handle_info after a delay of 1..1000 ms drawn from a fixed-seed 32-bit
 * LCG (seed 42, the peers' generator); right after creating every second
 * timer it cancels it with gs_cancel_timer. A cancel that returns
 * GS_ENOENT lost the race to its timer (the client was held up for a
 * millisecond or more): that timer counts as a delivery ("cancel_late").
 * The deadline is the creation time plus the delay; lateness is delivery
 * time minus deadline. The creation time is a clock read taken before
 * every stamp_every-th timer (default 16) and used for it and the ones
 * after it: a clock read costs about as much as a quarter of an arm on
 * this host, and it is the benchmark's cost, not the runtime's. The
 * stamp is never after a timer's true creation, so a deadline is never
 * later than the runtime's, and lateness is overstated, never understated,
 * by at most the time the loop took since the stamp (a few hundred ns of
 * arms, or a stall that falls among them). The early check weakens by as
 * much; tests/ check "never early" exactly. stamp_every=1 reads the clock
 * for every timer, as the peers do. The main thread waits until the collector has seen
 * t - (successful cancels) deliveries, waits 100 ms more, and checks that
 * every timer that should fire fired exactly once and no cancelled one
 * did. Also checked: no delivery before its deadline (the header's "never
 * early"). ops = t; seconds and ops_per_sec are the schedule+cancel phase.
 *
 * age_ms (not in WORKLOADS.md; default 0, the workload as written): wait
 * this long after the runtime started before arming. In a fresh runtime
 * the deadlines (up to 1,000 ticks) never cross a 4,096-tick boundary of
 * the wheel; age_ms=3500 makes them cross one, as they do in any runtime
 * that has run for a while (bench/README.md, W7 fourth session).
 */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench.h"

enum { W7_FIRE = 1, W7_NOTIFY_AT, W7_COUNT };

#define STALL_NS 200000 /* stamps this far apart count as a stall */

typedef struct fire {
    int64_t deadline_ns;
    uint32_t idx;
} fire;

typedef struct collector_arg {
    uint8_t *hits;   /* deliveries per timer */
    int64_t *late;   /* lateness per delivery, in order of arrival */
    int64_t t;
} collector_arg;

typedef struct collector_state {
    collector_arg a;
    int64_t count, early, bad;
    int64_t target;
    bool waiting;
    gs_from waiter;
} collector_state;

static int collector_init(gs_ctx *ctx, void *state, const void *arg)
{
    ((collector_state *)state)->a = *(const collector_arg *)arg;
    return GS_OK;
}

static int collector_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    collector_state *s = state;
    if (m->tag != W7_FIRE || m->len != sizeof(fire)) {
        s->bad++;
        return GS_OK;
    }
    fire f;
    memcpy(&f, m->data, sizeof f);
    int64_t late = bench_now_ns() - f.deadline_ns;
    if (f.idx >= s->a.t) {
        s->bad++;
        return GS_OK;
    }
    if (late < 0)
        s->early++;
    if (s->a.hits[f.idx] < 255)
        s->a.hits[f.idx]++;
    if (s->count < s->a.t)
        s->a.late[s->count] = late;
    s->count++;
    if (s->waiting && s->count >= s->target) {
        s->waiting = false;
        gs_reply(gs_ctx_runtime(ctx), s->waiter, &s->count, sizeof s->count);
    }
    return GS_OK;
}

static int collector_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    collector_state *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (m->tag == W7_NOTIFY_AT && m->len == sizeof(int64_t) && s->count < *(const int64_t *)m->data) {
        s->target = *(const int64_t *)m->data;
        s->waiting = true;
        s->waiter = from;
        return GS_NOREPLY;
    }
    int64_t r[3] = {s->count, s->early, s->bad};
    gs_reply(rt, from, r, m->tag == W7_COUNT ? sizeof r : sizeof r[0]);
    return GS_OK;
}

static const gs_server_ops collector_ops = {
    .name = "w7_collector",
    .state_size = sizeof(collector_state),
    .init = collector_init,
    .handle_call = collector_call,
    .handle_info = collector_info,
};

/* The peers' delay generator: 32-bit LCG (Numerical Recipes constants),
 * seed 42, mapped to 1..1000 ms. */
static int next_delay_ms(uint32_t *x)
{
    *x = *x * 1664525u + 1013904223u;
    return 1 + (int)(((uint64_t)*x * 1000u) >> 32);
}

void w7_timers(bench *b)
{
    int64_t t = bench_param(b, "t");
    int64_t age_ms = bench_param(b, "age_ms");
    int64_t stamp_every = bench_param(b, "stamp_every");
    if (!bench_expect(b, t > 0 && t <= UINT32_MAX, "need 0 < t < 2^32") ||
        !bench_expect(b, age_ms >= 0 && age_ms <= 600000, "need 0 <= age_ms <= 600000") ||
        !bench_expect(b, stamp_every >= 1 && stamp_every <= 1024, "need 1 <= stamp_every <= 1024"))
        return;
    bench_set_int(b, "stamp_every", stamp_every);
    if (age_ms > 0) {
        bench_set_int(b, "age_ms", age_ms);
        bench_sleep_ms((int)age_ms);
    }
    collector_arg a = {calloc((size_t)t, 1), malloc((size_t)t * sizeof(int64_t)), t};
    uint8_t *cancelled = calloc((size_t)t, 1);
    if (!bench_expect(b, a.hits && a.late && cancelled, "out of memory"))
        goto out;
    memset(a.late, 0, (size_t)t * sizeof(int64_t));
    gs_pid col;
    if (!bench_ok(b, gs_start(b->rt, &collector_ops, &a, &col), "gs_start collector"))
        goto out;

    uint32_t x = 42;
    int64_t n_cancelled = 0, cancel_late = 0, errors = 0;
    int first_rc = GS_OK;
    /* Read before the clock starts: walking /proc takes a few hundred
     * microseconds, which would count in the set-up and as a stall. */
    int64_t timer0 = bench_threads_cpu_ns("gs-timer"), workers0 = bench_threads_cpu_ns("gs-worker");
    /* The timer thread's own lateness, read at the same three points as
     * the deliveries' split (static: a histogram is 1.5 KiB). */
    static gs_timer_lateness fired0, fired_setup, fired_end;
    gs_timer_lateness_get(b->rt, &fired0);
    int64_t start = bench_now_ns();
    /* The arming thread's own CPU time: less sensitive than the rate to
     * the time the host or other threads take from it. */
    int64_t proc0 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID), cpu0 = bench_clock_ns(CLOCK_THREAD_CPUTIME_ID);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_THREAD, &ru0);
    /* Stamps that came over STALL_NS after the one before (a page brought
     * in, a preemption), from the clock reads the loop makes anyway. */
    int64_t prev = start, longest = 0, stalls = 0, at = start;
    for (int64_t i = 0; i < t; i++) {
        int d = next_delay_ms(&x);
        if (i % stamp_every == 0) {
            at = bench_now_ns();
            if (at - prev > longest)
                longest = at - prev;
            stalls += at - prev > STALL_NS;
            prev = at;
        }
        fire f = {at + (int64_t)d * 1000000, (uint32_t)i};
        gs_timer tm = 0;
        int rc = gs_send_after(b->rt, col, W7_FIRE, &f, sizeof f, d, &tm);
        if (rc != GS_OK) {
            if (errors++ == 0)
                first_rc = rc;
            continue;
        }
        if (i % 2 == 1) {
            rc = gs_cancel_timer(b->rt, tm);
            if (rc == GS_OK) {
                cancelled[i] = 1;
                n_cancelled++;
            } else if (rc == GS_ENOENT) {
                cancel_late++;
            } else if (errors++ == 0) {
                first_rc = rc;
            }
        }
    }
    int64_t setup = bench_now_ns() - start;
    gs_timer_lateness_get(b->rt, &fired_setup);
    int64_t arming_cpu = bench_clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    getrusage(RUSAGE_THREAD, &ru1);
    bench_set_int(b, "arming_cpu_ns_per_op", arming_cpu / t);
    /* Its split: system time (the record pool's pages coming in, wake-ups
     * of the timer thread), and the times it was preempted, where the
     * rate goes when the runtime's own threads or the host want its CPU. */
    int64_t sys_ns = (int64_t)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1000000000 +
                     (int64_t)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) * 1000;
    bench_set_int(b, "arming_sys_ns_per_op", sys_ns / t);
    bench_set_int(b, "arming_preempted", ru1.ru_nivcsw - ru0.ru_nivcsw);
    bench_set_int(b, "arming_stalls", stalls);
    bench_set_int(b, "arming_longest_ns", longest);
    /* Deliveries so far happened during the set-up phase, where the timer
     * thread competes with the arming loop for the CPUs. */
    int64_t during[3] = {0, 0, 0};
    bench_ok(b, gs_call(b->rt, col, W7_COUNT, NULL, 0, during, sizeof during, NULL, 5000), "count after set-up");

    int64_t expected = t - n_cancelled - errors;
    int64_t got = 0;
    int rc = gs_call(b->rt, col, W7_NOTIFY_AT, &expected, sizeof expected, &got, sizeof got, NULL, 60000);
    int64_t waited = bench_now_ns() - start;
    /* The whole process's CPU up to the last delivery: beside the arming
     * loop, what the timer thread and the workers spent delivering (and
     * spinning), so that a change in their cost shows even when the
     * lateness hides it. */
    int64_t process_cpu = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - proc0;
    /* ... split between the timer thread and the workers. */
    int64_t timer1 = bench_threads_cpu_ns("gs-timer"), workers1 = bench_threads_cpu_ns("gs-worker");
    gs_timer_lateness_get(b->rt, &fired_end);
    bench_sleep_ms(100); /* a cancelled timer that fires would show now */
    int64_t r[3] = {-1, -1, -1};
    bench_ok(b, gs_call(b->rt, col, W7_COUNT, NULL, 0, r, sizeof r, NULL, 5000), "count");

    int64_t wrong = 0;
    for (int64_t i = 0; i < t; i++)
        if (a.hits[i] != (cancelled[i] ? 0 : 1))
            wrong++;
    bench_rate(b, t, setup);
    bench_set_str(b, "cancel", "native");
    bench_set_int(b, "cancelled", n_cancelled);
    bench_set_int(b, "cancel_late", cancel_late);
    bench_set_int(b, "delivered", r[0]);
    bench_set_num(b, "until_last_s", (double)waited / 1e9);
    bench_set_int(b, "process_cpu_ns_per_op", process_cpu / t);
    if (r[0] > 0) {
        bench_set_int(b, "delivery_cpu_ns_per_delivery", (process_cpu - arming_cpu) / r[0]);
        if (timer0 >= 0 && timer1 >= 0)
            bench_set_int(b, "timer_thread_cpu_ns_per_delivery", (timer1 - timer0) / r[0]);
        if (workers0 >= 0 && workers1 >= 0)
            bench_set_int(b, "workers_cpu_ns_per_delivery", (workers1 - workers0) / r[0]);
    }
    int64_t nlate = r[0] < 0 ? 0 : r[0] > t ? t : r[0];
    /* The split first (bench_latencies sorts the whole array). */
    int64_t n_during = during[0] < 0 ? 0 : during[0] > nlate ? nlate : during[0];
    bench_sort_i64(a.late, (size_t)n_during);
    bench_sort_i64(a.late + n_during, (size_t)(nlate - n_during));
    bench_set_int(b, "delivered_during_setup", n_during);
    bench_set_int(b, "p99_during_setup_ns", bench_percentile(a.late, (size_t)n_during, 99, 100));
    bench_set_int(b, "p99_after_setup_ns",
                  bench_percentile(a.late + n_during, (size_t)(nlate - n_during), 99, 100));
    bench_latencies(b, a.late, (size_t)nlate);
    bench_set_int(b, "min_ns", nlate ? a.late[0] : 0);
    /* How much of that lateness is the timer thread's (the rest is the
     * collector's mailbox): by firing time, where the split above is by
     * delivery time. */
    bench_set_fire_lateness(b, "fire", &fired0, &fired_end);
    bench_set_fire_lateness(b, "fire_during_setup", &fired0, &fired_setup);
    bench_set_fire_lateness(b, "fire_after_setup", &fired_setup, &fired_end);
    bench_set_int(b, "early", r[1]);
    bench_expect(b, errors == 0, "%lld timer operations failed (first: %s)", (long long)errors,
                 gs_strerror(first_rc));
    bench_ok(b, rc, "waiting for the deliveries");
    bench_expect(b, r[0] == expected, "%lld deliveries, want %lld", (long long)r[0], (long long)expected);
    bench_expect(b, n_cancelled + cancel_late == t / 2, "%lld cancels tried, want %lld",
                 (long long)(n_cancelled + cancel_late), (long long)(t / 2));
    bench_expect(b, wrong == 0, "%lld timers delivered a wrong number of times (cancelled ones must not fire)",
                 (long long)wrong);
    bench_expect(b, r[1] == 0, "%lld timers delivered before their deadline", (long long)r[1]);
    bench_expect(b, r[2] == 0, "%lld malformed messages", (long long)r[2]);
out:
    free(a.hits);
    free(a.late);
    free(cancelled);
}
