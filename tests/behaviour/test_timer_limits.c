/* Timers at their limit: with GS_TIMERS_MAX timers held, gs_send_after
 * refuses more (GS_EAGAIN), gs_send_request with a timeout from a
 * callback refuses too (nothing sent),
 * and a call from a callback still times out: its timeout waits in the
 * worker's list of deferred timeouts and the call is completed from
 * there once its deadline has passed (scheduler.c). An idle timeout set
 * then cannot be armed: it stays set (logged once) and is armed at the
 * server's next message once records are free again; it used to be
 * dropped for good. The records come back when the timers' server stops,
 * though its exit finds no record to ask for the purge with (the timer
 * thread sweeps for them). About 2 GiB. */
#include "common.h"

static int hold_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    return GS_NOREPLY; /* never answers */
}

static const gs_server_ops mute_ops = {.name = "mute", .handle_call = hold_call};

static _Atomic gs_pid mute;
static atomic_int call_rc = 1;
static _Atomic int64_t call_ns = -1;

static atomic_int request_rc = 1;

static int caller_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == 2) {
        gs_request req = 0;
        atomic_store(&request_rc,
                     gs_send_request(gs_ctx_runtime(ctx), atomic_load(&mute), 1, NULL, 0, 100, &req));
        return GS_OK;
    }
    int64_t t0 = now_ns();
    int rc = gs_call(gs_ctx_runtime(ctx), atomic_load(&mute), 1, NULL, 0, NULL, 0, NULL, 100);
    atomic_store(&call_ns, now_ns() - t0);
    atomic_store(&call_rc, rc);
    return GS_OK;
}

static const gs_server_ops caller_ops = {.name = "caller", .handle_cast = caller_cast};

static atomic_int idle_timeouts;

static int idler_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == 1)
        gs_set_idle_timeout(ctx, 20);
    return GS_OK; /* tag 2: a message, nothing more */
}

static int idler_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == GS_TAG_TIMEOUT)
        atomic_fetch_add(&idle_timeouts, 1);
    return GS_OK;
}

static const gs_server_ops idler_ops = {.name = "idler", .handle_cast = idler_cast, .handle_info = idler_info};

Test(timer_limits, a_call_from_a_callback_times_out_with_every_timer_record_taken, .timeout = 300)
{
    gs_runtime *rt = rt_new(2);
    static logcap log;
    logcap_init(&log);
    gs_set_logger(rt, logcap_fn, &log);
    atomic_store(&mute, start_ok(rt, &mute_ops, NULL));
    gs_pid caller = start_ok(rt, &caller_ops, NULL);
    gs_pid idler = start_ok(rt, &idler_ops, NULL);
    /* Three servers with a timer each, stopped while the wheel is full. */
    gs_pid holders[3];
    for (int i = 0; i < 3; i++) {
        holders[i] = start_ok(rt, &idler_ops, NULL);
        cr_assert_eq(gs_send_after(rt, holders[i], 1, NULL, 0, 3600 * 1000, NULL), GS_OK);
    }
    uint64_t armed = 0;
    int rc;
    while ((rc = gs_send_after(rt, atomic_load(&mute), 1, NULL, 0, 3600 * 1000, NULL)) == GS_OK)
        armed++;
    cr_assert_eq(rc, GS_EAGAIN, "arming stopped with %d", rc);
    cr_assert_geq(armed, (uint64_t)GS_TIMERS_MAX - 4096, "only %llu timers armed", (unsigned long long)armed);
    cr_assert_eq(gs_cast(rt, caller, 2, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&request_rc, GS_EAGAIN, 5000),
              "a request from a callback whose timeout cannot be armed gave %d, not GS_EAGAIN",
              atomic_load(&request_rc));
    cr_assert_eq(gs_cast(rt, caller, 1, NULL, 0), GS_OK);
    int64_t until = now_ns() + 10 * 1000000000LL;
    while (atomic_load(&call_rc) == 1 && now_ns() < until)
        sleep_ms(5);
    cr_assert_eq(atomic_load(&call_rc), GS_ETIMEDOUT, "the call returned %d", atomic_load(&call_rc));
    int64_t ms = atomic_load(&call_ns) / 1000000;
    cr_assert(ms >= 100 && ms < 2000, "timed out after %lld ms, asked 100", (long long)ms);

    /* An idle timeout set now finds no record, nor at the next messages. */
    cr_assert_eq(gs_cast(rt, idler, 1, NULL, 0), GS_OK);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(gs_cast(rt, idler, 2, NULL, 0), GS_OK);
        sleep_ms(30);
    }
    cr_assert_eq(atomic_load(&idle_timeouts), 0);
    cr_assert_eq(logcap_count(&log, GS_LOG_ERROR, "idle timeout of 20 ms not armed", NULL, NULL, NULL), 1,
                 "the failure is logged once");
    /* Records come back when their server stops: its exit finds no record
     * to ask for a purge with, so it leaves its pid for the timer thread
     * (they used to stay until their deadline, an hour away). First three
     * small holders, whose purges must not walk the mute server's
     * timers, then the mute server itself. A message then arms the idle
     * timeout again, and silence brings it. */
    gs_runtime_stats st = {0};
    cr_assert_eq(gs_runtime_stats_get(rt, &st), GS_OK);
    uint64_t full = st.timers;
    for (int i = 0; i < 3; i++)
        stop_ok(rt, holders[i]);
    until = now_ns() + 20 * 1000000000LL;
    do {
        sleep_ms(20);
        cr_assert_eq(gs_runtime_stats_get(rt, &st), GS_OK);
    } while (st.timers + 3 > full && now_ns() < until);
    cr_assert_eq(st.timers + 3, full, "%llu held before the holders stopped, %llu after",
                 (unsigned long long)full, (unsigned long long)st.timers);
    stop_ok(rt, atomic_load(&mute));
    until = now_ns() + 60 * 1000000000LL;
    do {
        sleep_ms(50);
        cr_assert_eq(gs_runtime_stats_get(rt, &st), GS_OK);
    } while (st.timers > 1000 && now_ns() < until);
    cr_assert_leq(st.timers, 1000, "%llu timer records still held after their server stopped",
                  (unsigned long long)st.timers);
    until = now_ns() + 60 * 1000000000LL;
    while (atomic_load(&idle_timeouts) == 0 && now_ns() < until) {
        cr_assert_eq(gs_cast(rt, idler, 2, NULL, 0), GS_OK);
        sleep_ms(100);
    }
    cr_assert_gt(atomic_load(&idle_timeouts), 0, "the idle timeout never came back");
    rt_free(rt);
}
