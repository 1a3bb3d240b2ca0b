/* test_stop.c - gs_stop, GS_STOP from callbacks, terminate exactly once. */
#include "common.h"

enum {
    C_COUNT = 1,     /* cast: count++ */
    C_STOP = 2,      /* cast: return GS_STOP */
    C_SELF_STOP = 3, /* cast: gs_stop(self), record */
    C_SLOW = 4,      /* cast: sleep 300 ms, count++ */
    K_GET = 10,      /* call: reply count */
    K_SELF_STOP = 11, /* call: gs_stop(self), reply the status */
    K_STOP_PEER = 12, /* call: gs_stop(pid in payload), reply the status */
    K_REPLY_THEN_STOP = 13, /* call: reply then return GS_STOP */
};

#define MAXS 64

static atomic_int g_term_calls;          /* all terminate calls */
static atomic_int g_term_by_index[MAXS]; /* per server index */
static atomic_int g_term_reason[MAXS];
static atomic_long g_term_count_seen[MAXS]; /* state count at terminate */
static atomic_int g_term_started, g_term_done;
static atomic_int g_term_on_caller_thread;
static atomic_int g_cast_self_stop_rc;
static pthread_t g_test_thread;
static atomic_int g_slow_terminate_ms;
static atomic_int g_slow_started;

typedef struct {
    int index;
    long count;
} stop_state;

static void reset(void)
{
    atomic_store(&g_term_calls, 0);
    for (int i = 0; i < MAXS; i++) {
        atomic_store(&g_term_by_index[i], 0);
        atomic_store(&g_term_reason[i], 12345);
        atomic_store(&g_term_count_seen[i], -1);
    }
    atomic_store(&g_term_started, 0);
    atomic_store(&g_term_done, 0);
    atomic_store(&g_term_on_caller_thread, 0);
    atomic_store(&g_cast_self_stop_rc, 12345);
    atomic_store(&g_slow_terminate_ms, 0);
    atomic_store(&g_slow_started, 0);
    g_test_thread = pthread_self();
}

static int st_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    stop_state *s = state;
    s->index = arg ? *(const int *)arg : 0;
    return GS_OK;
}

static int st_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    stop_state *s = state;
    switch (msg->tag) {
    case C_COUNT:
        s->count++;
        return GS_OK;
    case C_STOP:
        return GS_STOP;
    case C_SLOW:
        atomic_store(&g_slow_started, 1);
        sleep_ms(300);
        s->count++;
        return GS_OK;
    case C_SELF_STOP:
        atomic_store(&g_cast_self_stop_rc,
                     gs_stop(gs_ctx_runtime(ctx), gs_self(ctx), GS_NORMAL, 1000));
        return GS_OK;
    default:
        return GS_OK;
    }
}

static int st_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    stop_state *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    int64_t out = 0;
    switch (msg->tag) {
    case K_GET:
        out = s->count;
        break;
    case K_SELF_STOP:
        out = gs_stop(rt, gs_self(ctx), 77, 1000);
        break;
    case K_STOP_PEER: {
        gs_pid peer;
        memcpy(&peer, msg->data, sizeof peer);
        out = gs_stop(rt, peer, 55, 5000);
        break;
    }
    case K_REPLY_THEN_STOP:
        out = s->count;
        gs_reply(rt, from, &out, sizeof out);
        return GS_STOP;
    }
    gs_reply(rt, from, &out, sizeof out);
    return GS_OK;
}

static void st_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    stop_state *s = state;
    atomic_store(&g_term_started, 1);
    if (pthread_equal(pthread_self(), g_test_thread))
        atomic_store(&g_term_on_caller_thread, 1);
    int slow = atomic_load(&g_slow_terminate_ms);
    if (slow)
        sleep_ms(slow);
    if (s->index >= 0 && s->index < MAXS) {
        atomic_store(&g_term_reason[s->index], reason);
        atomic_store(&g_term_count_seen[s->index], s->count);
        atomic_fetch_add(&g_term_by_index[s->index], 1);
    }
    atomic_fetch_add(&g_term_calls, 1);
    atomic_store(&g_term_done, 1);
}

static const gs_server_ops stop_ops = {
    .name = "stop-server",
    .state_size = sizeof(stop_state),
    .init = st_init,
    .handle_cast = st_cast,
    .handle_call = st_call,
    .terminate = st_terminate,
};

static int IDX[MAXS] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                        16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
                        32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
                        48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63};

/* ------------------------------------------------------------------ */

Test(stop, stop_runs_terminate_with_reason_before_returning, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    int rc = gs_stop(rt, pid, 42, 5000);
    cr_assert_eq(rc, GS_OK, "%d (%s)", rc, gs_strerror(rc));
    /* no waiting: terminate has run once gs_stop returned GS_OK */
    cr_assert_eq(atomic_load(&g_term_by_index[0]), 1, "terminate had not run");
    cr_assert_eq(atomic_load(&g_term_reason[0]), 42);
    cr_assert_eq(atomic_load(&g_term_on_caller_thread), 0,
                 "terminate must run on the server's worker, not the caller's thread");
    gs_pid p2 = start_ok(rt, &stop_ops, &IDX[1]);
    cr_assert_eq(gs_stop(rt, p2, GS_SHUTDOWN, GS_INFINITY), GS_OK);
    cr_assert_eq(atomic_load(&g_term_reason[1]), GS_SHUTDOWN);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_term_calls), 2, "terminate ran again at runtime stop");
}

Test(stop, queued_messages_are_handled_before_stop, .timeout = 15)
{
    reset();
    gs_runtime *rt = rt_new(2);
    enum { N = 5000 };
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    for (int i = 0; i < N; i++)
        cr_assert_eq(gs_cast(rt, pid, C_COUNT, NULL, 0), GS_OK);
    cr_assert_eq(gs_stop(rt, pid, GS_NORMAL, 10000), GS_OK);
    cr_assert_eq(atomic_load(&g_term_count_seen[0]), N, "terminate saw %ld of %d casts",
                 atomic_load(&g_term_count_seen[0]), N);
    rt_free(rt);
}

Test(stop, everything_after_stop_gives_enoproc, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(1);
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    stop_ok(rt, pid);
    cr_assert_eq(gs_cast(rt, pid, C_COUNT, NULL, 0), GS_ENOPROC);
    int64_t v;
    cr_assert_eq(call_i64(rt, pid, K_GET, 0, &v, 1000), GS_ENOPROC);
    cr_assert_eq(gs_stop(rt, pid, GS_NORMAL, 1000), GS_ENOPROC, "stopping twice");
    cr_assert_eq(gs_stop(rt, GS_NOPID, GS_NORMAL, 1000), GS_ENOPROC);
    cr_assert_eq(gs_stop(rt, (gs_pid)0x0123456789abcdefull, GS_NORMAL, 1000), GS_ENOPROC);
    cr_assert_eq(gs_stop(rt, ~(gs_pid)0, GS_NORMAL, 1000), GS_ENOPROC);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_term_calls), 1);
}

Test(stop, invalid_arguments, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(1);
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    cr_assert_eq(gs_stop(NULL, pid, GS_NORMAL, 1000), GS_EINVAL);
    cr_assert_eq(gs_stop(rt, pid, GS_NORMAL, -5), GS_EINVAL);
    cr_assert_eq(gs_stop(rt, pid, GS_NORMAL, GS_TIMEOUT_MAX_MS + 1), GS_EINVAL);
    cr_assert_eq(atomic_load(&g_term_calls), 0, "a refused gs_stop stopped the server");
    int64_t v;
    cr_assert_eq(call_i64(rt, pid, K_GET, 0, &v, 5000), GS_OK, "server must still be alive");
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(stop, stop_self_from_callback_gives_edeadlk, .timeout = 15)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    int64_t v = 0;
    cr_assert_eq(call_i64(rt, pid, K_SELF_STOP, 0, &v, 5000), GS_OK);
    cr_assert_eq(v, GS_EDEADLK, "gs_stop(self) in handle_call gave %" PRId64, v);
    cr_assert_eq(gs_cast(rt, pid, C_SELF_STOP, NULL, 0), GS_OK);
    cr_assert_eq(call_i64(rt, pid, K_GET, 0, &v, 5000), GS_OK, "server died after gs_stop(self)");
    cr_assert_eq(atomic_load(&g_cast_self_stop_rc), GS_EDEADLK,
                 "gs_stop(self) in handle_cast gave %d", atomic_load(&g_cast_self_stop_rc));
    cr_assert_eq(atomic_load(&g_term_calls), 0);
    stop_ok(rt, pid);
    cr_assert_eq(atomic_load(&g_term_calls), 1);
    cr_assert_eq(atomic_load(&g_term_reason[0]), GS_NORMAL);
    rt_free(rt);
}

Test(stop, stop_another_server_from_callback, .timeout = 15)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &stop_ops, &IDX[0]);
    gs_pid b = start_ok(rt, &stop_ops, &IDX[1]);
    int64_t rc = 999;
    cr_assert_eq(call_i64(rt, a, K_STOP_PEER, (int64_t)b, &rc, 10000), GS_OK);
    cr_assert_eq(rc, GS_OK, "gs_stop(peer) inside a callback gave %" PRId64, rc);
    cr_assert_eq(atomic_load(&g_term_by_index[1]), 1);
    cr_assert_eq(atomic_load(&g_term_reason[1]), 55);
    cr_assert_eq(gs_cast(rt, b, C_COUNT, NULL, 0), GS_ENOPROC);
    stop_ok(rt, a);
    rt_free(rt);
}

Test(stop, callback_returning_stop_terminates_normally, .timeout = 15)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(gs_cast(rt, pid, C_COUNT, NULL, 0), GS_OK);
    cr_assert_eq(gs_cast(rt, pid, C_STOP, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&g_term_calls, 1, 5000), "terminate did not run after GS_STOP");
    cr_assert_eq(atomic_load(&g_term_reason[0]), GS_NORMAL);
    cr_assert_eq(atomic_load(&g_term_count_seen[0]), 3);
    cr_assert_eq(gs_cast(rt, pid, C_COUNT, NULL, 0), GS_ENOPROC);
    int64_t v;
    cr_assert_eq(call_i64(rt, pid, K_GET, 0, &v, 1000), GS_ENOPROC);
    cr_assert_eq(gs_stop(rt, pid, GS_NORMAL, 1000), GS_ENOPROC);

    /* handle_call: reply, then GS_STOP */
    gs_pid p2 = start_ok(rt, &stop_ops, &IDX[1]);
    cr_assert_eq(gs_cast(rt, p2, C_COUNT, NULL, 0), GS_OK);
    cr_assert_eq(call_i64(rt, p2, K_REPLY_THEN_STOP, 0, &v, 5000), GS_OK,
                 "the reply sent before GS_STOP must reach the caller");
    cr_assert_eq(v, 1);
    cr_assert(wait_int_eq(&g_term_by_index[1], 1, 5000));
    cr_assert_eq(atomic_load(&g_term_reason[1]), GS_NORMAL);
    cr_assert_eq(gs_cast(rt, p2, C_COUNT, NULL, 0), GS_ENOPROC);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_term_calls), 2);
}

Test(stop, stop_timeout_shorter_than_slow_terminate, .timeout = 15)
{
    reset();
    atomic_store(&g_slow_terminate_ms, 300);
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    int64_t t0 = now_ns();
    int rc = gs_stop(rt, pid, 9, 50);
    int64_t took = now_ns() - t0;
    cr_assert_eq(rc, GS_ETIMEDOUT, "%d (%s)", rc, gs_strerror(rc));
    cr_assert_geq(took, 49LL * 1000000, "gave up after %lld us", (long long)(took / 1000));
    cr_assert_lt(took, 2000LL * 1000000);
    /* the server still stops */
    int64_t v;
    cr_assert_eq(call_i64(rt, pid, K_GET, 0, &v, 5000), GS_ENOPROC);
    cr_assert_eq(gs_cast(rt, pid, C_COUNT, NULL, 0), GS_ENOPROC);
    cr_assert(wait_int_eq(&g_term_calls, 1, 5000), "terminate never finished");
    cr_assert_eq(atomic_load(&g_term_reason[0]), 9);
    cr_assert_eq(gs_stop(rt, pid, GS_NORMAL, 1000), GS_ENOPROC);
    sleep_ms(100);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_term_calls), 1, "terminate ran more than once");
}

struct stopper {
    gs_runtime *rt;
    gs_pid pid;
    int rc;
    int done_at_return;
};

static void *stopper_thread(void *p)
{
    struct stopper *s = p;
    s->rc = gs_stop(s->rt, s->pid, GS_NORMAL, 10000);
    s->done_at_return = atomic_load(&g_term_done);
    return NULL;
}

Test(stop, concurrent_double_stop_both_wait_for_termination, .timeout = 15)
{
    reset();
    atomic_store(&g_slow_terminate_ms, 300);
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    struct stopper s1 = {.rt = rt, .pid = pid}, s2 = {.rt = rt, .pid = pid};
    pthread_t t1, t2;
    cr_assert_eq(pthread_create(&t1, NULL, stopper_thread, &s1), 0);
    cr_assert(wait_int_eq(&g_term_started, 1, 5000));
    cr_assert_eq(pthread_create(&t2, NULL, stopper_thread, &s2), 0); /* during terminate */
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_eq(s1.rc, GS_OK, "first stop: %d (%s)", s1.rc, gs_strerror(s1.rc));
    cr_assert(s2.rc == GS_OK || s2.rc == GS_ENOPROC, "second stop: %d (%s)", s2.rc,
              gs_strerror(s2.rc));
    cr_assert_eq(s1.done_at_return, 1);
    cr_assert_eq(s2.done_at_return, 1,
                 "the second concurrent gs_stop returned (%d) before terminate finished", s2.rc);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_term_calls), 1);
}

Test(stop, terminate_exactly_once_under_racing_stops, .timeout = 30)
{
    reset();
    gs_runtime *rt = rt_new(2);
    enum { N = MAXS };
    gs_pid pids[N];
    for (int i = 0; i < N; i++)
        pids[i] = start_ok(rt, &stop_ops, &IDX[i]);
    /* every server is told to stop by itself (GS_STOP), by gs_stop, and
     * finally by gs_runtime_stop, all racing */
    for (int i = 0; i < N; i++) {
        if (i % 3 != 2)
            cr_assert_eq(gs_cast(rt, pids[i], C_STOP, NULL, 0), GS_OK);
    }
    for (int i = 0; i < N; i++) {
        if (i % 3 == 1)
            continue; /* left to GS_STOP + gs_runtime_stop */
        int rc = gs_stop(rt, pids[i], 7, 5000);
        cr_assert(rc == GS_OK || rc == GS_ENOPROC, "server %d: gs_stop gave %d (%s)", i, rc,
                  gs_strerror(rc));
    }
    rt_free(rt);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&g_term_by_index[i]), 1, "server %d terminated %d times", i,
                     atomic_load(&g_term_by_index[i]));
        int r = atomic_load(&g_term_reason[i]);
        /* a GS_STOP cast queued before gs_stop / gs_runtime_stop is handled first */
        int want = (i % 3 == 2) ? 7 : GS_NORMAL;
        cr_assert_eq(r, want, "server %d: reason %d, expected %d", i, r, want);
    }
    cr_assert_eq(atomic_load(&g_term_calls), N);
}

Test(stop, concurrent_double_stop_queued_behind_slow_message, .timeout = 15)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    cr_assert_eq(gs_cast(rt, pid, C_SLOW, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&g_slow_started, 1, 5000));
    struct stopper s1 = {.rt = rt, .pid = pid}, s2 = {.rt = rt, .pid = pid};
    pthread_t t1, t2;
    cr_assert_eq(pthread_create(&t1, NULL, stopper_thread, &s1), 0);
    cr_assert_eq(pthread_create(&t2, NULL, stopper_thread, &s2), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert(s1.rc == GS_OK || s1.rc == GS_ENOPROC, "stop 1: %d (%s)", s1.rc,
              gs_strerror(s1.rc));
    cr_assert(s2.rc == GS_OK || s2.rc == GS_ENOPROC, "stop 2: %d (%s)", s2.rc,
              gs_strerror(s2.rc));
    cr_assert(s1.rc == GS_OK || s2.rc == GS_OK, "neither stop reported GS_OK");
    cr_assert_eq(s1.done_at_return, 1, "stop 1 (%d) returned before terminate ran", s1.rc);
    cr_assert_eq(s2.done_at_return, 1, "stop 2 (%d) returned before terminate ran", s2.rc);
    cr_assert_eq(atomic_load(&g_term_count_seen[0]), 1, "the slow message was not finished first");
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_term_calls), 1);
}

Test(stop, messages_after_the_stop_request_are_dropped, .timeout = 15)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    cr_assert_eq(gs_cast(rt, pid, C_SLOW, NULL, 0), GS_OK); /* busy for 300 ms */
    cr_assert_eq(gs_cast(rt, pid, C_COUNT, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&g_slow_started, 1, 5000));
    /* the stop request is queued, but the server is still busy: time out */
    int rc = gs_stop(rt, pid, 5, 10);
    /* GS_OK only if this thread was descheduled for the whole 300 ms */
    cr_assert(rc == GS_ETIMEDOUT || rc == GS_OK, "%d (%s)", rc, gs_strerror(rc));
    /* sent after the stop request by the same thread: dropped */
    rc = gs_cast(rt, pid, C_COUNT, NULL, 0);
    cr_assert(rc == GS_OK || rc == GS_ENOPROC, "cast after stop request: %d", rc);
    int64_t v = -1;
    int64_t t0 = now_ms();
    rc = call_i64(rt, pid, 10, 0, &v, 10000);
    cr_assert_eq(rc, GS_ENOPROC, "call after the stop request: %d (%s), reply %" PRId64, rc,
                 gs_strerror(rc), v);
    cr_assert_lt(now_ms() - t0, 5000);
    cr_assert(wait_int_eq(&g_term_calls, 1, 5000));
    cr_assert_eq(atomic_load(&g_term_reason[0]), 5);
    cr_assert_eq(atomic_load(&g_term_count_seen[0]), 2,
                 "terminate saw %ld handled casts: want the 2 sent before the stop",
                 atomic_load(&g_term_count_seen[0]));
    rt_free(rt);
}

Test(stop, zero_timeout_still_stops_the_server, .timeout = 15)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &stop_ops, &IDX[0]);
    cr_assert_eq(gs_cast(rt, pid, C_SLOW, NULL, 0), GS_OK); /* busy: cannot be done at once */
    cr_assert(wait_int_eq(&g_slow_started, 1, 5000));
    int rc = gs_stop(rt, pid, 3, 0);
    cr_assert(rc == GS_OK || rc == GS_ETIMEDOUT, "gs_stop with timeout 0: %d (%s)", rc,
              gs_strerror(rc));
    if (rc == GS_OK)
        cr_assert_eq(atomic_load(&g_term_calls), 1, "GS_OK before terminate ran");
    cr_assert(wait_int_eq(&g_term_calls, 1, 5000), "the server did not stop");
    cr_assert_eq(atomic_load(&g_term_reason[0]), 3);
    cr_assert_eq(gs_cast(rt, pid, C_COUNT, NULL, 0), GS_ENOPROC);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_term_calls), 1);
}
