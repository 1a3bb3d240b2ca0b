/* Interval timers: gs_send_interval, and gs_cancel_timer / gs_read_timer
 * on them. */
#include "common.h"

enum { T_TICK = 5, T_BIG = 6, C_COUNT = 1, C_ARM_SELF, C_BUSY_AT };

#define MAXTICKS 256
#define BIG_LEN 200

/* One ticker server at a time; its callbacks never overlap, and the test
 * thread reads these after a wait or a call that orders them. */
static int64_t tick_at_ns[MAXTICKS];
static uint64_t tick_timer[MAXTICKS]; /* gs_msg.timer of each tick */
static atomic_int ticks;
static atomic_int bad_ticks;          /* wrong tag, payload or sender */
static atomic_int count_at_busy = -1; /* ticks handled when C_BUSY_AT began */
static gs_timer own_timer;            /* armed by the server on itself */
static int cancel_after = -1;         /* the server cancels own_timer at this tick */
static int own_cancel_rc = 9999;
static int hold_ms_before_cancel;

static void reset(void)
{
    memset(tick_at_ns, 0, sizeof tick_at_ns);
    memset(tick_timer, 0, sizeof tick_timer);
    atomic_store(&ticks, 0);
    atomic_store(&bad_ticks, 0);
    atomic_store(&count_at_busy, -1);
    own_timer = 0;
    cancel_after = -1;
    own_cancel_rc = 9999;
    hold_ms_before_cancel = 0;
}

static bool payload_ok(const gs_msg *m)
{
    if (m->sender != GS_NOPID)
        return false;
    if (m->tag == T_TICK) {
        int64_t v;
        if (m->len != sizeof v)
            return false;
        memcpy(&v, m->data, sizeof v);
        return v == 4242;
    }
    if (m->tag == T_BIG) {
        if (m->len != BIG_LEN)
            return false;
        for (size_t i = 0; i < BIG_LEN; i++)
            if (((const unsigned char *)m->data)[i] != (unsigned char)(i * 7 + 1))
                return false;
        return true;
    }
    return false;
}

static int ticker_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (!payload_ok(m))
        atomic_fetch_add(&bad_ticks, 1);
    int n = atomic_load(&ticks);
    if (n < MAXTICKS) {
        tick_at_ns[n] = now_ns();
        tick_timer[n] = m->timer;
    }
    atomic_store(&ticks, n + 1);
    if (n + 1 == cancel_after) {
        /* Let further ticks queue up behind this one, then cancel: none
         * of them may reach this callback. */
        sleep_ms(hold_ms_before_cancel);
        own_cancel_rc = gs_cancel_timer(gs_ctx_runtime(ctx), own_timer);
    }
    return GS_OK;
}

static int ticker_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    int64_t in = 0, out = 0;
    if (m->len == sizeof in)
        memcpy(&in, m->data, sizeof in);
    switch (m->tag) {
    case C_COUNT:
        out = atomic_load(&ticks);
        break;
    case C_ARM_SELF: {
        int64_t payload = 4242;
        out = gs_send_interval(gs_ctx_runtime(ctx), gs_self(ctx), T_TICK, &payload, sizeof payload, (int)in,
                               &own_timer);
        break;
    }
    case C_BUSY_AT:
        atomic_store(&count_at_busy, atomic_load(&ticks));
        sleep_ms((int)in);
        break;
    }
    return gs_reply(gs_ctx_runtime(ctx), from, &out, sizeof out);
}

static const gs_server_ops ticker_ops = {.name = "ticker", .handle_info = ticker_info, .handle_call = ticker_call};

static uint64_t timers_held(gs_runtime *rt)
{
    gs_runtime_stats s;
    cr_assert_eq(gs_runtime_stats_get(rt, &s), GS_OK);
    return s.timers;
}

/* A fresh runtime with a ticker server and an interval timer of
 * interval_ms on it, armed from this thread (payload 4242). */
static gs_runtime *ticker_ticking(int interval_ms, gs_pid *p, gs_timer *t)
{
    reset();
    gs_runtime *rt = rt_new(2);
    *p = start_ok(rt, &ticker_ops, NULL);
    int64_t payload = 4242;
    *t = 0;
    cr_assert_eq(gs_send_interval(rt, *p, T_TICK, &payload, sizeof payload, interval_ms, t), GS_OK);
    cr_assert_neq(*t, 0);
    return rt;
}

Test(intervals, ticks_again_and_again_never_early, .timeout = 30)
{
    gs_pid p;
    gs_timer t;
    int64_t t0 = now_ns();
    gs_runtime *rt = ticker_ticking(10, &p, &t);
    cr_assert(wait_int_ge(&ticks, 8, 10000), "8 ticks of a 10 ms interval timer: got %d", atomic_load(&ticks));
    cr_assert_eq(gs_cancel_timer(rt, t), GS_OK, "cancelling a running interval timer");
    cr_assert_eq(gs_cancel_timer(rt, t), GS_ENOENT, "cancelled already");
    int64_t after_cancel;
    cr_assert_eq(call_i64(rt, p, C_COUNT, 0, &after_cancel, 5000), GS_OK);
    sleep_ms(60); /* six intervals: no tick may come */
    int64_t later;
    cr_assert_eq(call_i64(rt, p, C_COUNT, 0, &later, 5000), GS_OK);
    cr_assert_eq(later, after_cancel, "ticks after the cancel returned: %lld then %lld", (long long)after_cancel,
                 (long long)later);
    cr_assert_eq(atomic_load(&bad_ticks), 0, "a tick with the wrong tag, payload or sender");
    for (int k = 0; k < 8; k++)
        cr_assert_eq(tick_timer[k], t, "tick %d names %#llx, not its timer", k + 1,
                     (unsigned long long)tick_timer[k]);
    for (int k = 0; k < 8; k++)
        cr_assert_geq(tick_at_ns[k] - t0, (int64_t)(k + 1) * 10 * 1000000, "tick %d early: %lld ns after arming",
                      k + 1, (long long)(tick_at_ns[k] - t0));
    rt_free(rt);
}

Test(intervals, a_server_that_cancels_its_own_handles_no_tick_after, .timeout = 30)
{
    reset();
    cancel_after = 5;
    hold_ms_before_cancel = 30; /* some 15 ticks of 2 ms queue up meanwhile */
    gs_runtime *rt = rt_new(2);
    gs_pid p = start_ok(rt, &ticker_ops, NULL);
    int64_t rc;
    cr_assert_eq(call_i64(rt, p, C_ARM_SELF, 2, &rc, 5000), GS_OK);
    cr_assert_eq(rc, GS_OK, "gs_send_interval from the server itself");
    cr_assert(wait_int_ge(&ticks, 5, 10000));
    sleep_ms(150);
    int64_t n;
    cr_assert_eq(call_i64(rt, p, C_COUNT, 0, &n, 5000), GS_OK); /* orders own_cancel_rc too */
    cr_assert_eq(own_cancel_rc, GS_OK);
    cr_assert_eq(n, 5, "the server handled %lld ticks; it cancelled at the 5th", (long long)n);
    cr_assert_eq(atomic_load(&bad_ticks), 0);
    rt_free(rt);
}

Test(intervals, a_cancel_from_outside_drops_the_queued_ticks, .timeout = 30)
{
    gs_pid p;
    gs_timer t;
    gs_runtime *rt = ticker_ticking(3, &p, &t);
    cr_assert(wait_int_ge(&ticks, 2, 10000));
    /* Keep the server busy for 60 ms (a request, so that this thread goes
     * on meanwhile), while ticks queue behind it. */
    gs_request req;
    int64_t busy_ms = 60;
    cr_assert_eq(gs_send_request(rt, p, C_BUSY_AT, &busy_ms, sizeof busy_ms, 10000, &req), GS_OK);
    cr_assert(wait_int_ge(&count_at_busy, 0, 10000), "the busy call never began");
    sleep_ms(30);
    cr_assert_eq(gs_cancel_timer(rt, t), GS_OK);
    int64_t out;
    cr_assert_eq(gs_wait_request(rt, req, &out, sizeof out, NULL, 10000), GS_OK);
    int64_t n;
    cr_assert_eq(call_i64(rt, p, C_COUNT, 0, &n, 5000), GS_OK);
    cr_assert_eq(n, atomic_load(&count_at_busy), "%lld ticks handled, %d before the busy call: queued ticks of a "
                 "cancelled timer were handled", (long long)n, atomic_load(&count_at_busy));
    rt_free(rt);
}

Test(intervals, a_big_payload_comes_whole_every_tick, .timeout = 30)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid p = start_ok(rt, &ticker_ops, NULL);
    unsigned char big[BIG_LEN];
    for (size_t i = 0; i < BIG_LEN; i++)
        big[i] = (unsigned char)(i * 7 + 1);
    gs_timer t = 0;
    cr_assert_eq(gs_send_interval(rt, p, T_BIG, big, sizeof big, 5, &t), GS_OK);
    memset(big, 0, sizeof big);
    cr_assert(wait_int_ge(&ticks, 4, 10000));
    cr_assert_eq(gs_cancel_timer(rt, t), GS_OK);
    cr_assert_eq(atomic_load(&bad_ticks), 0, "a copy of the payload differed");
    rt_free(rt);
}

Test(intervals, read_timer_gives_the_time_to_the_next_tick, .timeout = 30)
{
    gs_pid p;
    gs_timer t;
    gs_runtime *rt = ticker_ticking(100, &p, &t);
    int left = -1;
    cr_assert_eq(gs_read_timer(rt, t, &left), GS_OK);
    cr_assert(left >= 0 && left <= 100, "%d ms left of a 100 ms interval", left);
    cr_assert(wait_int_ge(&ticks, 2, 10000));
    cr_assert_eq(gs_read_timer(rt, t, &left), GS_OK, "still running after two ticks");
    cr_assert(left >= 0 && left <= 100, "%d ms to the next tick of a 100 ms interval", left);
    cr_assert_eq(gs_cancel_timer(rt, t), GS_OK);
    cr_assert_eq(gs_read_timer(rt, t, &left), GS_ENOENT);
    rt_free(rt);
}

Test(intervals, a_stopped_server_takes_its_interval_timers_with_it, .timeout = 30)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid p = start_ok(rt, &ticker_ops, NULL);
    int64_t payload = 4242;
    gs_timer t[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(gs_send_interval(rt, p, T_TICK, &payload, sizeof payload, 2 + i, &t[i]), GS_OK);
    /* a big one too: its message template must be freed with it */
    unsigned char big[BIG_LEN] = {0};
    cr_assert_eq(gs_send_interval(rt, p, T_BIG, big, sizeof big, 4, NULL), GS_OK);
    cr_assert(wait_int_ge(&ticks, 6, 10000));
    stop_ok(rt, p);
    int left;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(gs_cancel_timer(rt, t[i]), GS_ENOENT, "timer %d of a stopped server", i);
        cr_assert_eq(gs_read_timer(rt, t[i], &left), GS_ENOENT);
    }
    int64_t deadline = now_ms() + 5000;
    while (timers_held(rt) != 0 && now_ms() < deadline)
        sleep_ms(5);
    cr_assert_eq(timers_held(rt), 0, "the stopped server's interval timers are still held");
    rt_free(rt);
}

Test(intervals, bad_input_is_refused, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    gs_pid p = start_ok(rt, &ticker_ops, NULL);
    int64_t v = 1;
    gs_timer t = 77;
    cr_assert_eq(gs_send_interval(NULL, p, 1, &v, sizeof v, 10, &t), GS_EINVAL);
    cr_assert_eq(gs_send_interval(rt, p, 1, &v, sizeof v, 0, &t), GS_EINVAL, "a zero interval");
    cr_assert_eq(gs_send_interval(rt, p, 1, &v, sizeof v, -5, &t), GS_EINVAL);
    cr_assert_eq(gs_send_interval(rt, p, 1, &v, sizeof v, GS_TIMEOUT_MAX_MS + 1, &t), GS_EINVAL);
    cr_assert_eq(gs_send_interval(rt, p, 1, NULL, 8, 10, &t), GS_EINVAL);
    cr_assert_eq(gs_send_interval(rt, p, GS_TAG_RUNTIME_BASE, &v, sizeof v, 10, &t), GS_EINVAL);
    cr_assert_eq(gs_send_interval(rt, p, 1, &v, (size_t)GS_MSG_MAX + 1, 10, &t), GS_EMSGSIZE);
    cr_assert_eq(t, 77, "no handle on failure");
    stop_ok(rt, p);
    cr_assert_eq(gs_send_interval(rt, p, 1, &v, sizeof v, 10, &t), GS_ENOPROC, "a stopped server");
    cr_assert_eq(gs_send_interval(rt, GS_NOPID, 1, &v, sizeof v, 10, &t), GS_ENOPROC);
    rt_free(rt);
}

Test(intervals, running_interval_timers_are_freed_by_runtime_stop, .timeout = 30)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid p = start_ok(rt, &ticker_ops, NULL);
    int64_t payload = 4242;
    unsigned char big[BIG_LEN] = {0};
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(gs_send_interval(rt, p, T_TICK, &payload, sizeof payload, 1 + i, NULL), GS_OK);
        cr_assert_eq(gs_send_interval(rt, p, T_BIG, big, sizeof big, 1000 + i, NULL), GS_OK); /* still waiting */
    }
    cr_assert(wait_int_ge(&ticks, 20, 10000));
    /* Every record and message template goes with the runtime: LeakSanitizer
     * (the ASan build) fails the test otherwise. */
    rt_free(rt);
}
