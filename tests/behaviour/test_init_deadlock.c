/* test_init_deadlock.c - an init run inside a server's callback (gs_start
 * from handle_call) must not wait on that server: it cannot answer until
 * the init returns. gs_call and gs_stop to it return GS_EDEADLK at once
 * (they used to wait out their timeout, or for ever); a request, which
 * does not wait, still goes out. The list of such servers follows an init
 * that suspends in a call, and stays out of the worker's other turns.
 *
 * Results are recorded by the servers and asserted on the test thread. */
#include "common.h"

enum { P_START_CHILD = 1, P_PING, S_HOLD, S_RELEASE, Q_GO };
enum { M_CALL, M_STOP, M_REQUEST, M_GRANDCHILD, M_SUSPEND };

#define NONE 12345 /* "not recorded": never a status code */

static gs_pid g_parent, g_slow, g_q;
static atomic_int g_rc1, g_rc2, g_rc3, g_q_rc;

static void reset(void)
{
    atomic_store(&g_rc1, NONE);
    atomic_store(&g_rc2, NONE);
    atomic_store(&g_rc3, NONE);
    atomic_store(&g_q_rc, NONE);
}

static int ping_parent(gs_ctx *ctx)
{
    int64_t r = 0;
    return gs_call(gs_ctx_runtime(ctx), g_parent, P_PING, NULL, 0, &r, sizeof r, NULL, 1000);
}

/* Started by the child's init: the parent and the child both wait for it. */
static int grandchild_init(gs_ctx *ctx, void *state, const void *arg)
{
    gs_pid child = *(const gs_pid *)arg;
    int64_t r = 0;
    atomic_store(&g_rc2, ping_parent(ctx));
    atomic_store(&g_rc3, gs_call(gs_ctx_runtime(ctx), child, P_PING, NULL, 0, &r, sizeof r, NULL, 1000));
    return GS_OK;
}

static const gs_server_ops grandchild_ops = {.name = "grandchild", .init = grandchild_init};

static int child_init(gs_ctx *ctx, void *state, const void *arg)
{
    gs_runtime *rt = gs_ctx_runtime(ctx);
    switch (*(const int *)arg) {
    case M_CALL:
        atomic_store(&g_rc1, ping_parent(ctx));
        break;
    case M_STOP:
        atomic_store(&g_rc1, gs_stop(rt, g_parent, GS_NORMAL, 1000));
        break;
    case M_REQUEST: {
        gs_request req;
        atomic_store(&g_rc1, gs_send_request(rt, g_parent, P_PING, NULL, 0, 1000, &req));
        break;
    }
    case M_GRANDCHILD: {
        gs_pid self = gs_self(ctx), g = GS_NOPID;
        atomic_store(&g_rc1, gs_start(rt, &grandchild_ops, &self, &g));
        break;
    }
    case M_SUSPEND: {
        /* Suspends the parent's fiber until q has run on the worker. */
        int64_t r = 0;
        atomic_store(&g_rc1, gs_call(rt, g_slow, S_HOLD, NULL, 0, &r, sizeof r, NULL, 5000));
        atomic_store(&g_rc2, ping_parent(ctx)); /* resumed: still inside the parent's callback */
        break;
    }
    }
    return GS_OK;
}

static const gs_server_ops child_ops = {.name = "child", .init = child_init};

/* The parent starts a child from its handle_call and replies the start's
 * result; a ping gets 1. */
static int parent_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    gs_runtime *rt = gs_ctx_runtime(ctx);
    int64_t r = 1;
    if (m->tag == P_START_CHILD) {
        gs_pid child = GS_NOPID;
        r = gs_start(rt, &child_ops, m->data, &child);
        if (r == GS_OK)
            (void)gs_stop(rt, child, GS_NORMAL, 5000);
    }
    return gs_reply(rt, from, &r, sizeof r);
}

static const gs_server_ops parent_ops = {.name = "parent", .handle_call = parent_call};

/* s holds a call until q tells it to answer. */
typedef struct {
    gs_from held;
    bool holding;
} slow_state;

static int slow_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    slow_state *s = state;
    s->held = from;
    s->holding = true;
    (void)gs_cast(gs_ctx_runtime(ctx), g_q, Q_GO, NULL, 0);
    return GS_NOREPLY;
}

static int slow_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    slow_state *s = state;
    int64_t r = 7;
    if (m->tag == S_RELEASE && s->holding) {
        s->holding = false;
        gs_reply(gs_ctx_runtime(ctx), s->held, &r, sizeof r);
    }
    return GS_OK;
}

static const gs_server_ops slow_ops = {
    .name = "slow", .state_size = sizeof(slow_state), .handle_call = slow_call, .handle_cast = slow_cast};

/* q runs while the parent's fiber is suspended: its call to the parent is
 * an ordinary wait (answered once the parent's callback returns). */
static int q_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    (void)gs_cast(gs_ctx_runtime(ctx), g_slow, S_RELEASE, NULL, 0);
    int64_t r = 0;
    atomic_store(&g_q_rc, gs_call(gs_ctx_runtime(ctx), g_parent, P_PING, NULL, 0, &r, sizeof r, NULL, 5000));
    return GS_OK;
}

static const gs_server_ops q_ops = {.name = "q", .handle_cast = q_cast};

/* Asks the parent to start a child in `mode`; returns what gs_start gave. */
static int64_t start_child(gs_runtime *rt, int mode)
{
    int64_t r = NONE;
    int rc = gs_call(rt, g_parent, P_START_CHILD, &mode, sizeof mode, &r, sizeof r, NULL, 10000);
    cr_assert_eq(rc, GS_OK, "the parent's call returned %d (%s)", rc, gs_strerror(rc));
    return r;
}

static gs_runtime *setup(unsigned workers)
{
    reset();
    gs_runtime *rt = rt_new(workers);
    g_parent = start_ok(rt, &parent_ops, NULL);
    return rt;
}

Test(init_deadlock, call_to_the_server_running_the_init, .timeout = 10)
{
    gs_runtime *rt = setup(2);
    int64_t t0 = now_ms();
    cr_assert_eq(start_child(rt, M_CALL), GS_OK);
    cr_assert_eq(atomic_load(&g_rc1), GS_EDEADLK, "the init's call returned %d", atomic_load(&g_rc1));
    cr_assert_lt(now_ms() - t0, 900, "refused at once, not after the call's timeout");
    int64_t r = 0;
    cr_assert_eq(call_i64(rt, g_parent, P_PING, 0, &r, 5000), GS_OK);
    rt_free(rt);
}

Test(init_deadlock, stop_of_the_server_running_the_init, .timeout = 10)
{
    gs_runtime *rt = setup(2);
    cr_assert_eq(start_child(rt, M_STOP), GS_OK);
    cr_assert_eq(atomic_load(&g_rc1), GS_EDEADLK, "the init's stop returned %d", atomic_load(&g_rc1));
    int64_t r = 0;
    cr_assert_eq(call_i64(rt, g_parent, P_PING, 0, &r, 5000), GS_OK, "the parent was not stopped");
    rt_free(rt);
}

Test(init_deadlock, request_to_the_server_running_the_init_still_goes, .timeout = 10)
{
    gs_runtime *rt = setup(2);
    cr_assert_eq(start_child(rt, M_REQUEST), GS_OK);
    cr_assert_eq(atomic_load(&g_rc1), GS_OK, "the init's request returned %d", atomic_load(&g_rc1));
    rt_free(rt);
}

Test(init_deadlock, nested_init_refuses_both_servers_it_runs_inside, .timeout = 10)
{
    gs_runtime *rt = setup(2);
    cr_assert_eq(start_child(rt, M_GRANDCHILD), GS_OK);
    cr_assert_eq(atomic_load(&g_rc1), GS_OK, "starting the grandchild returned %d", atomic_load(&g_rc1));
    cr_assert_eq(atomic_load(&g_rc2), GS_EDEADLK, "calling the parent returned %d", atomic_load(&g_rc2));
    cr_assert_eq(atomic_load(&g_rc3), GS_EDEADLK, "calling the child returned %d", atomic_load(&g_rc3));
    rt_free(rt);
}

/* One worker: while the init waits in its call, q runs on the same thread
 * and calls the parent (an ordinary wait, answered later); after the
 * resume the init is inside the parent's callback again. */
Test(init_deadlock, suspended_init_takes_its_servers_along, .timeout = 15)
{
    gs_runtime *rt = setup(1);
    g_slow = start_ok(rt, &slow_ops, NULL);
    g_q = start_ok(rt, &q_ops, NULL);
    cr_assert_eq(start_child(rt, M_SUSPEND), GS_OK);
    cr_assert_eq(atomic_load(&g_rc1), GS_OK, "the init's call to slow returned %d", atomic_load(&g_rc1));
    cr_assert_eq(atomic_load(&g_rc2), GS_EDEADLK, "after resuming, calling the parent returned %d",
                 atomic_load(&g_rc2));
    cr_assert(wait_int_eq(&g_q_rc, GS_OK, 5000), "q's call to the parent returned %d", atomic_load(&g_q_rc));
    rt_free(rt);
}

/* An init of runtime B, run inside a callback of runtime A's parent, that
 * suspends in a call into A: once resumed it is still B's server. The
 * resume used to set the current server to "none" (the call's caller is
 * recorded only for its own runtime), so the init's later self-call
 * waited out its timeout, its gs_kill of itself killed it, and its casts
 * went out from GS_NOPID. */
static gs_runtime *g_rt_b;
static gs_pid g_sink, g_b_self;
static _Atomic gs_pid g_sender_seen;
enum { SINK_NOTE = 9 };

static int sink_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    atomic_store(&g_sender_seen, m->sender);
    return GS_OK;
}

static const gs_server_ops sink_ops = {.name = "sink", .handle_cast = sink_cast};

static int other_runtime_init(gs_ctx *ctx, void *state, const void *arg)
{
    int64_t r = 0;
    g_b_self = gs_self(ctx);
    /* Into the parent's runtime: suspends the parent's fiber there. */
    atomic_store(&g_rc1, gs_call(*(gs_runtime *const *)arg, g_slow, P_PING, NULL, 0, &r, sizeof r, NULL, 5000));
    atomic_store(&g_rc2, gs_call(g_rt_b, g_b_self, P_PING, NULL, 0, &r, sizeof r, NULL, 300));
    atomic_store(&g_rc3, gs_kill(g_rt_b, g_b_self));
    (void)gs_cast(g_rt_b, g_sink, SINK_NOTE, NULL, 0);
    return GS_OK;
}

static const gs_server_ops other_runtime_ops = {.name = "other_runtime", .init = other_runtime_init};

static int starter_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    gs_runtime *rt_a = gs_ctx_runtime(ctx);
    gs_pid b = GS_NOPID;
    int64_t r = gs_start(g_rt_b, &other_runtime_ops, &rt_a, &b);
    return gs_reply(rt_a, from, &r, sizeof r);
}

static const gs_server_ops starter_ops = {.name = "starter", .handle_call = starter_call};

/* Answers at once (the slow server's role here: q is not needed). */
static int quick_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    int64_t r = 7;
    return gs_reply(gs_ctx_runtime(ctx), from, &r, sizeof r);
}

static const gs_server_ops quick_ops = {.name = "quick", .handle_call = quick_call};

Test(init_deadlock, an_init_of_another_runtime_is_itself_again_after_a_suspension, .timeout = 15)
{
    reset();
    gs_runtime *rt_a = rt_new(2);
    g_rt_b = rt_new(2);
    g_slow = start_ok(rt_a, &quick_ops, NULL);
    g_sink = start_ok(g_rt_b, &sink_ops, NULL);
    gs_pid starter = start_ok(rt_a, &starter_ops, NULL);
    int64_t r = NONE;
    cr_assert_eq(gs_call(rt_a, starter, 1, NULL, 0, &r, sizeof r, NULL, 10000), GS_OK);
    cr_assert_eq(r, GS_OK, "gs_start in the other runtime returned %d", (int)r);
    cr_assert_eq(atomic_load(&g_rc1), GS_OK, "the call into the parent's runtime returned %d", atomic_load(&g_rc1));
    cr_assert_eq(atomic_load(&g_rc2), GS_EDEADLK, "calling itself after the resume returned %d",
                 atomic_load(&g_rc2));
    cr_assert_eq(atomic_load(&g_rc3), GS_EDEADLK, "killing itself after the resume returned %d",
                 atomic_load(&g_rc3));
    for (int i = 0; i < 5000 && atomic_load(&g_sender_seen) == GS_NOPID; i++)
        sleep_ms(1);
    cr_assert_eq(atomic_load(&g_sender_seen), g_b_self, "its cast went out as %llx, not as itself",
                 (unsigned long long)atomic_load(&g_sender_seen));
    rt_free(rt_a);
    rt_free(g_rt_b);
}

/* gs_runtime_stop(B) from an init run inside an init of B's server (an
 * outside thread starts X in B, X's init starts Y in runtime C, Y's init
 * stops B): the stop would wait for X, whose init is below on the same
 * stack. It hung; it returns GS_EDEADLK. */
static gs_runtime *g_rt_c;
static atomic_int g_stop_rc = NONE;

static int stopper_init(gs_ctx *ctx, void *state, const void *arg)
{
    atomic_store(&g_stop_rc, gs_runtime_stop(g_rt_b));
    return GS_OK;
}

static const gs_server_ops stopper_ops = {.name = "stopper", .init = stopper_init};

static int middle_init(gs_ctx *ctx, void *state, const void *arg)
{
    gs_pid y;
    return gs_start(g_rt_c, &stopper_ops, NULL, &y);
}

static const gs_server_ops middle_ops = {.name = "middle", .init = middle_init};

Test(init_deadlock, runtime_stop_from_an_init_inside_one_of_its_servers, .timeout = 15)
{
    g_rt_b = rt_new(2);
    g_rt_c = rt_new(1);
    gs_pid x = start_ok(g_rt_b, &middle_ops, NULL);
    cr_assert_neq(x, GS_NOPID);
    cr_assert_eq(atomic_load(&g_stop_rc), GS_EDEADLK, "gs_runtime_stop from the inner init returned %d",
                 atomic_load(&g_stop_rc));
    rt_free(g_rt_c);
    rt_free(g_rt_b);
}
