/* The timer thread's lateness histogram: gs_timer_lateness_get. What is
 * counted (each fired timer, each interval tick) and what is not (a
 * cancelled timer); the figures agree with each other and with the
 * lateness the receiving server sees. */
#include "common.h"

static atomic_int received;
static int64_t last_at_ns; /* one server: its callbacks never overlap */

static int counter_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    last_at_ns = now_ns();
    atomic_fetch_add(&received, 1);
    return GS_OK;
}

static const gs_server_ops counter_ops = {.name = "counter", .handle_info = counter_info};

static gs_timer_lateness read_lateness(gs_runtime *rt)
{
    gs_timer_lateness l;
    cr_assert_eq(gs_timer_lateness_get(rt, &l), GS_OK);
    uint64_t sum = 0;
    for (unsigned b = 0; b < GS_LATENESS_BUCKETS; b++)
        sum += l.buckets[b];
    cr_assert_eq(l.fired, sum, "fired is the buckets' sum");
    return l;
}

Test(timer_lateness, fired_timers_are_counted_and_cancelled_ones_are_not, .timeout = 30)
{
    atomic_store(&received, 0);
    gs_runtime *rt = rt_new(2);
    gs_timer_lateness before = read_lateness(rt);
    cr_assert_eq(before.fired, 0, "a new runtime has fired nothing");
    cr_assert_eq(before.max_ns, 0);
    gs_pid c = start_ok(rt, &counter_ops, NULL);
    enum { N = 40 };
    int cancelled = 0;
    for (int i = 0; i < N; i++) {
        gs_timer t = 0;
        cr_assert_eq(gs_send_after(rt, c, 1, NULL, 0, i % 2 ? 200 : 1 + i, &t), GS_OK);
        if (i % 2) { /* 200 ms out: cancelled long before it is due */
            cr_assert_eq(gs_cancel_timer(rt, t), GS_OK);
            cancelled++;
        }
    }
    cr_assert(wait_int_eq(&received, N - cancelled, 5000));
    sleep_ms(300); /* past the cancelled ones' deadline */
    cr_assert_eq(atomic_load(&received), N - cancelled);
    gs_timer_lateness after = read_lateness(rt);
    cr_assert_eq(after.fired, (uint64_t)(N - cancelled), "one count per fired timer, none per cancelled one");
    uint64_t p50 = gs_timer_lateness_percentile(&after, 50, 100);
    uint64_t p100 = gs_timer_lateness_percentile(&after, 100, 100);
    cr_assert_leq(p50, p100);
    cr_assert_eq(p100, after.max_ns, "the last rank is the max");
    rt_free(rt);
}

Test(timer_lateness, every_interval_tick_is_counted, .timeout = 30)
{
    atomic_store(&received, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid c = start_ok(rt, &counter_ops, NULL);
    gs_timer t = 0;
    cr_assert_eq(gs_send_interval(rt, c, 1, NULL, 0, 5, &t), GS_OK);
    cr_assert(wait_int_ge(&received, 10, 5000));
    cr_assert_eq(gs_cancel_timer(rt, t), GS_OK);
    sleep_ms(50); /* a tick sent just before the cancel has arrived */
    int got = atomic_load(&received);
    gs_timer_lateness l = read_lateness(rt);
    /* A tick sent as the cancel came is counted, and dropped at the server
     * as no longer current: at most one more than arrived. */
    cr_assert(l.fired >= (uint64_t)got && l.fired <= (uint64_t)got + 1, "%llu counted, %d ticks arrived",
              (unsigned long long)l.fired, got);
    rt_free(rt);
}

Test(timer_lateness, the_timer_threads_share_is_within_what_the_server_sees, .timeout = 30)
{
    /* One timer: its lateness at the server (deadline to handle_info) is
     * the thread's share plus the wait in the mailbox, so at least the
     * thread's share, give or take the histogram's eighth and the few
     * microseconds by which the deadline clock may run ahead. */
    atomic_store(&received, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid c = start_ok(rt, &counter_ops, NULL);
    int64_t armed = now_ns();
    cr_assert_eq(gs_send_after(rt, c, 1, NULL, 0, 20, NULL), GS_OK);
    cr_assert(wait_int_eq(&received, 1, 5000));
    int64_t seen_late = last_at_ns - (armed + 20 * 1000000LL);
    gs_timer_lateness l = read_lateness(rt);
    cr_assert_eq(l.fired, 1);
    cr_assert_geq(seen_late, 0, "delivered early");
    cr_assert_leq((int64_t)l.max_ns, seen_late + seen_late / 8 + 10000,
                  "the thread's share %llu ns is more than the %lld ns the server saw",
                  (unsigned long long)l.max_ns, (long long)seen_late);
    rt_free(rt);
}
