/* test_lifecycle.c - gs_start / init / state / gs_self / gs_ctx_runtime. */
#include "common.h"

enum { TAG_GET = 1, TAG_SET = 2, TAG_SELF = 3, TAG_STATE_IS_NULL = 4, TAG_SPAWN = 5 };

static const gs_server_ops basic_ops;

/* ---- globals written by callbacks, read by the test thread ---- */
static atomic_int g_init_calls;
static atomic_int g_init_arg_value;
static atomic_int g_init_same_thread;
static atomic_int g_init_state_zero;  /* 1: all zero, 0: not zero, -1: state NULL */
static atomic_int g_init_state_null;
static atomic_int g_terminate_calls;
static atomic_int g_terminate_reason;
static _Atomic gs_pid g_init_self;
static _Atomic(gs_runtime *) g_init_rt;
static _Atomic gs_pid g_call_self;
static _Atomic gs_pid g_spawned;
static _Atomic(gs_runtime *) g_call_rt;
static pthread_t g_test_thread;

static void reset_globals(void)
{
    atomic_store(&g_init_calls, 0);
    atomic_store(&g_init_arg_value, -1);
    atomic_store(&g_init_same_thread, -1);
    atomic_store(&g_init_state_zero, -2);
    atomic_store(&g_init_state_null, -1);
    atomic_store(&g_terminate_calls, 0);
    atomic_store(&g_terminate_reason, 12345);
    atomic_store(&g_init_self, GS_NOPID);
    atomic_store(&g_init_rt, NULL);
    atomic_store(&g_call_self, GS_NOPID);
    atomic_store(&g_spawned, GS_NOPID);
    atomic_store(&g_call_rt, NULL);
    g_test_thread = pthread_self();
}

/* ---- a basic server: state is an int64 set from init's arg ---- */
struct init_arg {
    int value;
    int init_rc; /* what init returns */
};
typedef struct {
    int64_t value;
    int64_t pad[7];
} basic_state;


static int basic_init(gs_ctx *ctx, void *state, const void *arg)
{
    atomic_fetch_add(&g_init_calls, 1);
    atomic_store(&g_init_same_thread, pthread_equal(pthread_self(), g_test_thread) ? 1 : 0);
    atomic_store(&g_init_self, gs_self(ctx));
    atomic_store(&g_init_rt, gs_ctx_runtime(ctx));
    if (state) {
        const unsigned char *p = state;
        int zero = 1;
        for (size_t i = 0; i < sizeof(basic_state); i++)
            if (p[i])
                zero = 0;
        atomic_store(&g_init_state_zero, zero);
    } else {
        atomic_store(&g_init_state_zero, -1);
    }
    const struct init_arg *a = arg;
    if (a) {
        atomic_store(&g_init_arg_value, a->value);
        if (state)
            ((basic_state *)state)->value = a->value;
        return a->init_rc;
    }
    return GS_OK;
}

static int basic_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    gs_runtime *rt = gs_ctx_runtime(ctx);
    basic_state *s = state;
    int64_t out = 0;
    switch (msg->tag) {
    case TAG_GET:
        out = s ? s->value : -1;
        break;
    case TAG_SET:
        if (s && msg->len == sizeof(int64_t)) {
            memset(s->pad, 0xA5, sizeof s->pad); /* dirty the whole state */
            memcpy(&s->value, msg->data, sizeof(int64_t));
        }
        out = s ? s->value : -1;
        break;
    case TAG_SELF:
        atomic_store(&g_call_self, gs_self(ctx));
        atomic_store(&g_call_rt, gs_ctx_runtime(ctx));
        out = (int64_t)gs_self(ctx);
        break;
    case TAG_STATE_IS_NULL:
        out = state == NULL ? 1 : 0;
        break;
    case TAG_SPAWN: {
        /* start a child from inside a callback; its arg lives on this stack */
        struct init_arg child_arg = {.value = s ? (int)s->value + 1 : 1, .init_rc = GS_OK};
        gs_pid child = GS_NOPID;
        int rc = gs_start(rt, &basic_ops, &child_arg, &child);
        atomic_store(&g_spawned, child);
        out = rc;
        break;
    }
    default:
        out = -99;
    }
    gs_reply(rt, from, &out, sizeof out);
    return GS_OK;
}

static void basic_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    (void)state;
    atomic_store(&g_terminate_reason, reason);
    atomic_fetch_add(&g_terminate_calls, 1);
}

static const gs_server_ops basic_ops = {
    .name = "lifecycle-basic",
    .state_size = sizeof(basic_state),
    .init = basic_init,
    .handle_call = basic_call,
    .terminate = basic_terminate,
};

static const gs_server_ops stateless_ops = {
    .name = "lifecycle-stateless",
    .state_size = 0,
    .init = basic_init,
    .handle_call = basic_call,
    .terminate = basic_terminate,
};

/* ------------------------------------------------------------------ */

Test(lifecycle, init_runs_before_gs_start_returns_and_sees_stack_arg, .timeout = 10)
{
    reset_globals();
    gs_runtime *rt = rt_new(2);
    gs_pid pid;
    {
        struct init_arg a = {.value = 4242, .init_rc = GS_OK}; /* on this stack frame */
        pid = start_ok(rt, &basic_ops, &a);
        /* init must already have run: no waiting here */
        cr_assert_eq(atomic_load(&g_init_calls), 1, "init did not run before gs_start returned");
        cr_assert_eq(atomic_load(&g_init_arg_value), 4242, "init did not see the stack argument");
        a.value = -1; /* overwrite: the server must not depend on it any more */
    }
    cr_expect_eq(atomic_load(&g_init_same_thread), 1,
                 "init must run on the thread calling gs_start");
    int64_t v = 0;
    cr_assert_eq(call_i64(rt, pid, TAG_GET, 0, &v, 5000), GS_OK);
    cr_assert_eq(v, 4242, "state written by init was not kept (got %" PRId64 ")", v);
    stop_ok(rt, pid);
    cr_assert_eq(atomic_load(&g_terminate_calls), 1);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_init_calls), 1, "init ran more than once");
}

Test(lifecycle, init_returning_stop_gives_ecanceled_without_terminate, .timeout = 10)
{
    reset_globals();
    gs_runtime *rt = rt_new(2);
    struct init_arg a = {.value = 1, .init_rc = GS_STOP};
    gs_pid pid = GS_NOPID;
    int rc = gs_start(rt, &basic_ops, &a, &pid);
    cr_assert_eq(rc, GS_ECANCELED, "init returning GS_STOP: gs_start gave %d (%s)", rc,
                 gs_strerror(rc));
    cr_assert_eq(atomic_load(&g_init_calls), 1);
    /* the server never existed */
    gs_pid refused = atomic_load(&g_init_self);
    if (refused != GS_NOPID) {
        cr_expect_eq(gs_cast(rt, refused, 1, NULL, 0), GS_ENOPROC,
                     "a refused server must not be reachable by its pid");
    }
    /* the runtime still works */
    struct init_arg ok = {.value = 7, .init_rc = GS_OK};
    gs_pid good = start_ok(rt, &basic_ops, &ok);
    stop_ok(rt, good);
    cr_assert_eq(atomic_load(&g_terminate_calls), 1, "terminate must only run for the good server");
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_terminate_calls), 1,
                 "terminate ran for a server whose init returned GS_STOP");
}

Test(lifecycle, init_returning_negative_code_is_returned_unchanged, .timeout = 10)
{
    reset_globals();
    gs_runtime *rt = rt_new(1);
    const int codes[] = {GS_ENOTSUP, GS_EAGAIN, GS_ENOMEM, -1000};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        struct init_arg a = {.value = (int)i, .init_rc = codes[i]};
        gs_pid pid = GS_NOPID;
        int rc = gs_start(rt, &basic_ops, &a, &pid);
        cr_assert_eq(rc, codes[i], "init returned %d, gs_start returned %d", codes[i], rc);
        gs_pid refused = atomic_load(&g_init_self);
        if (refused != GS_NOPID)
            cr_expect_eq(gs_call(rt, refused, TAG_GET, NULL, 0, NULL, 0, NULL, 1000), GS_ENOPROC,
                         "a server whose init failed must not exist");
    }
    cr_assert_eq(atomic_load(&g_init_calls), 4);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_terminate_calls), 0,
                 "terminate ran for servers whose init failed");
}

Test(lifecycle, state_size_zero_gives_null_state, .timeout = 10)
{
    reset_globals();
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &stateless_ops, NULL);
    cr_assert_eq(atomic_load(&g_init_state_zero), -1, "init got a non-NULL state for state_size 0");
    int64_t v = 0;
    cr_assert_eq(call_i64(rt, pid, TAG_STATE_IS_NULL, 0, &v, 5000), GS_OK);
    cr_assert_eq(v, 1, "handle_call got a non-NULL state for state_size 0");
    stop_ok(rt, pid);
    cr_assert_eq(atomic_load(&g_terminate_calls), 1);
    rt_free(rt);
}

Test(lifecycle, state_is_zeroed, .timeout = 10)
{
    reset_globals();
    gs_runtime *rt = rt_new(2);
    /* start/stop many servers so that reused memory would show up if the
     * runtime forgot to zero it (the previous servers dirty their state) */
    for (int i = 0; i < 200; i++) {
        atomic_store(&g_init_state_zero, -2);
        gs_pid pid = start_ok(rt, &basic_ops, NULL);
        cr_assert_eq(atomic_load(&g_init_state_zero), 1, "state not zeroed at init (server %d)", i);
        int64_t junk = -1;
        int64_t v = 0;
        cr_assert_eq(call_i64(rt, pid, TAG_SET, junk, &v, 5000), GS_OK);
        cr_assert_eq(v, -1);
        stop_ok(rt, pid);
    }
    rt_free(rt);
}

Test(lifecycle, self_and_runtime_from_ctx, .timeout = 10)
{
    reset_globals();
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &basic_ops, NULL);
    cr_assert_eq(atomic_load(&g_init_self), pid, "gs_self(ctx) in init differs from the pid");
    cr_assert_eq(atomic_load(&g_init_rt), rt, "gs_ctx_runtime(ctx) in init is not the runtime");
    int64_t v = 0;
    cr_assert_eq(call_i64(rt, pid, TAG_SELF, 0, &v, 5000), GS_OK);
    cr_assert_eq((gs_pid)v, pid);
    cr_assert_eq(atomic_load(&g_call_self), pid, "gs_self(ctx) in handle_call differs");
    cr_assert_eq(atomic_load(&g_call_rt), rt, "gs_ctx_runtime(ctx) in handle_call differs");
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(lifecycle, distinct_servers_get_distinct_pids_and_states, .timeout = 10)
{
    reset_globals();
    gs_runtime *rt = rt_new(2);
    enum { N = 64 };
    gs_pid pids[N];
    for (int i = 0; i < N; i++) {
        struct init_arg a = {.value = 1000 + i, .init_rc = GS_OK};
        pids[i] = start_ok(rt, &basic_ops, &a);
        for (int j = 0; j < i; j++)
            cr_assert_neq(pids[i], pids[j], "two live servers share a pid");
    }
    for (int i = 0; i < N; i++) {
        int64_t v = 0;
        cr_assert_eq(call_i64(rt, pids[i], TAG_GET, 0, &v, 5000), GS_OK);
        cr_assert_eq(v, 1000 + i, "server %d has state %" PRId64, i, v);
    }
    for (int i = 0; i < N; i++)
        stop_ok(rt, pids[i]);
    cr_assert_eq(atomic_load(&g_terminate_calls), N);
    rt_free(rt);
}

Test(lifecycle, all_null_callbacks_ops, .timeout = 10)
{
    static const gs_server_ops empty_ops = {0}; /* name NULL, no state, no callbacks */
    static const gs_server_ops empty_with_state = {.state_size = 128};
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &empty_ops, NULL);
    gs_pid b = start_ok(rt, &empty_with_state, "ignored arg");
    cr_assert_neq(a, b);
    cr_assert_eq(gs_cast(rt, a, 5, "x", 1), GS_OK, "cast to a server without handle_cast");
    cr_assert_eq(gs_cast(rt, b, 5, NULL, 0), GS_OK);
    char buf[8];
    int rc = gs_call(rt, a, 5, NULL, 0, buf, sizeof buf, NULL, 5000);
    cr_assert_eq(rc, GS_ENOTSUP, "call to a server without handle_call gave %d (%s)", rc,
                 gs_strerror(rc));
    rc = gs_call(rt, b, 6, "abc", 3, buf, sizeof buf, NULL, 5000);
    cr_assert_eq(rc, GS_ENOTSUP);
    cr_assert_eq(gs_stop(rt, a, GS_NORMAL, 5000), GS_OK);
    /* b is stopped by gs_runtime_stop */
    rt_free(rt);
}

Test(lifecycle, start_with_null_out_pointer, .timeout = 10)
{
    reset_globals();
    gs_runtime *rt = rt_new(1);
    struct init_arg a = {.value = 3, .init_rc = GS_OK};
    cr_assert_eq(gs_start(rt, &basic_ops, &a, NULL), GS_OK);
    gs_pid pid = atomic_load(&g_init_self);
    cr_assert_neq(pid, GS_NOPID);
    int64_t v = 0;
    cr_assert_eq(call_i64(rt, pid, TAG_GET, 0, &v, 5000), GS_OK);
    cr_assert_eq(v, 3);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_terminate_calls), 1, "runtime stop must terminate the server");
    cr_assert_eq(atomic_load(&g_terminate_reason), GS_SHUTDOWN);
}

Test(lifecycle, start_rejects_state_larger_than_msg_max, .timeout = 10)
{
    reset_globals();
    static const gs_server_ops huge = {.name = "huge", .state_size = GS_MSG_MAX + 1,
                                       .init = basic_init};
    gs_runtime *rt = rt_new(1);
    gs_pid pid = GS_NOPID;
    cr_assert_eq(gs_start(rt, &huge, NULL, &pid), GS_EINVAL);
    cr_assert_eq(atomic_load(&g_init_calls), 0, "init must not run for invalid ops");
    rt_free(rt);
}

Test(lifecycle, start_from_inside_a_callback, .timeout = 15)
{
    reset_globals();
    gs_runtime *rt = rt_new(2);
    struct init_arg a = {.value = 10, .init_rc = GS_OK};
    gs_pid parent = start_ok(rt, &basic_ops, &a);
    int64_t v = 0;
    cr_assert_eq(call_i64(rt, parent, TAG_SPAWN, 0, &v, 5000), GS_OK);
    cr_assert_eq(v, GS_OK, "gs_start inside handle_call failed: %" PRId64, v);
    gs_pid child = atomic_load(&g_spawned);
    cr_assert_neq(child, GS_NOPID);
    cr_assert_neq(child, parent);
    cr_assert_eq(call_i64(rt, child, TAG_GET, 0, &v, 5000), GS_OK);
    cr_assert_eq(v, 11, "child state %" PRId64, v);
    stop_ok(rt, child);
    stop_ok(rt, parent);
    cr_assert_eq(atomic_load(&g_terminate_calls), 2);
    rt_free(rt);
}
