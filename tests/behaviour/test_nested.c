/* test_nested.c - servers calling servers from inside callbacks. */
#include "common.h"

enum {
    B_TWICE_PLUS_ONE = 1, /* B: reply 2x+1 */
    A_VIA_B = 2,          /* A: call B with x, reply B's answer + 1000 */
    A_SET_PEER = 3,       /* A: payload is B's pid */
    A_CAST_VIA_B = 4,     /* A (cast): call B, add the answer to A's sum */
    A_GET_SUM = 5,
    A_INNER_TIMEOUT = 6, /* A: call B_DEFER with a timeout, then B_LATE_THEN_TWICE */
    B_DEFER = 7,          /* B: keep from, never reply */
    B_LATE_THEN_TWICE = 8, /* B: reply -777 to the kept from, then 2x+1 */
};

static atomic_int g_b_late_rc;

typedef struct {
    gs_from kept;
    int has_kept;
} b_state;

static atomic_int g_inner_fail;  /* A's inner calls that failed */
static atomic_int g_inner_first_rc;
static atomic_int g_b_calls;

typedef struct {
    gs_pid peer;
    int64_t sum;
} a_state;

static int b_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    b_state *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    atomic_fetch_add(&g_b_calls, 1);
    if (msg->tag == B_DEFER) {
        s->kept = from;
        s->has_kept = 1;
        return GS_NOREPLY;
    }
    if (msg->tag == B_LATE_THEN_TWICE && s->has_kept) {
        int64_t late = -777;
        atomic_store(&g_b_late_rc, gs_reply(rt, s->kept, &late, sizeof late));
        s->has_kept = 0;
    }
    int64_t x = 0;
    if (msg->len == sizeof x)
        memcpy(&x, msg->data, sizeof x);
    int64_t r = 2 * x + 1;
    gs_reply(rt, from, &r, sizeof r);
    return GS_OK;
}

static const gs_server_ops b_ops = {
    .name = "nested-B", .state_size = sizeof(b_state), .handle_call = b_call};

struct inner_result {
    int rc1;
    int rc2;
    int64_t r2;
    int64_t took1_ns;
};

static int64_t ask_b(gs_ctx *ctx, a_state *s, int64_t x)
{
    int64_t r = 0;
    size_t len = 0;
    int rc = gs_call(gs_ctx_runtime(ctx), s->peer, B_TWICE_PLUS_ONE, &x, sizeof x, &r, sizeof r,
                     &len, 10000);
    if (rc != GS_OK || len != sizeof r) {
        int expected = 0;
        atomic_compare_exchange_strong(&g_inner_first_rc, &expected, rc ? rc : 9999);
        atomic_fetch_add(&g_inner_fail, 1);
        return INT64_MIN;
    }
    return r;
}

static int a_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    a_state *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    int64_t x = 0, out = 0;
    switch (msg->tag) {
    case A_SET_PEER:
        memcpy(&s->peer, msg->data, sizeof s->peer);
        break;
    case A_VIA_B:
        memcpy(&x, msg->data, sizeof x);
        out = ask_b(ctx, s, x);
        if (out != INT64_MIN)
            out += 1000;
        break;
    case A_GET_SUM:
        out = s->sum;
        break;
    case A_INNER_TIMEOUT: {
        struct inner_result ir;
        memset(&ir, 0, sizeof ir);
        int64_t five = 5, r = 0;
        int64_t t0 = now_ns();
        ir.rc1 = gs_call(rt, s->peer, B_DEFER, &five, sizeof five, &r, sizeof r, NULL, 100);
        ir.took1_ns = now_ns() - t0;
        ir.rc2 = gs_call(rt, s->peer, B_LATE_THEN_TWICE, &five, sizeof five, &ir.r2,
                         sizeof ir.r2, NULL, 5000);
        gs_reply(rt, from, &ir, sizeof ir);
        return GS_OK;
    }
    default:
        out = -1;
    }
    gs_reply(rt, from, &out, sizeof out);
    return GS_OK;
}

static int a_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    a_state *s = state;
    if (msg->tag == A_CAST_VIA_B) {
        int64_t x;
        memcpy(&x, msg->data, sizeof x);
        int64_t r = ask_b(ctx, s, x);
        if (r != INT64_MIN)
            s->sum += r;
    }
    return GS_OK;
}

static const gs_server_ops a_ops = {
    .name = "nested-A",
    .state_size = sizeof(a_state),
    .handle_call = a_call,
    .handle_cast = a_cast,
};

static void reset(void)
{
    atomic_store(&g_b_late_rc, 12345);
    atomic_store(&g_inner_fail, 0);
    atomic_store(&g_inner_first_rc, 0);
    atomic_store(&g_b_calls, 0);
}

static void link_a_to_b(gs_runtime *rt, gs_pid a, gs_pid b)
{
    int64_t r;
    cr_assert_eq(gs_call(rt, a, A_SET_PEER, &b, sizeof b, &r, sizeof r, NULL, 5000), GS_OK);
}

Test(nested, server_calls_another_server_from_callbacks, .timeout = 15)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid b = start_ok(rt, &b_ops, NULL);
    gs_pid a = start_ok(rt, &a_ops, NULL);
    link_a_to_b(rt, a, b);
    int64_t r = 0;
    cr_assert_eq(call_i64(rt, a, A_VIA_B, 20, &r, 10000), GS_OK);
    cr_assert_eq(r, 1041, "A via B gave %" PRId64, r);
    /* from handle_cast as well */
    int64_t expect = 0;
    for (int64_t x = 0; x < 100; x++) {
        cr_assert_eq(gs_cast(rt, a, A_CAST_VIA_B, &x, sizeof x), GS_OK);
        expect += 2 * x + 1;
    }
    cr_assert_eq(call_i64(rt, a, A_GET_SUM, 0, &r, 10000), GS_OK);
    cr_assert_eq(atomic_load(&g_inner_fail), 0, "inner calls failed (first rc %d)",
                 atomic_load(&g_inner_first_rc));
    cr_assert_eq(r, expect);
    stop_ok(rt, a);
    stop_ok(rt, b);
    rt_free(rt);
}

#define OUTSIDE 4
#define CALLS_EACH 2000

struct outside_arg {
    gs_runtime *rt;
    gs_pid a;
    int id;
    int errors, wrong, first_rc;
};

static void *outside_caller(void *p)
{
    struct outside_arg *o = p;
    for (int i = 0; i < CALLS_EACH; i++) {
        int64_t x = (int64_t)o->id * 1000000 + i, r = 0;
        int rc = call_i64(o->rt, o->a, A_VIA_B, x, &r, 20000);
        if (rc != GS_OK) {
            if (!o->errors)
                o->first_rc = rc;
            o->errors++;
        } else if (r != 2 * x + 1 + 1000) {
            o->wrong++;
        }
    }
    return NULL;
}

Test(nested, outside_threads_hammer_server_that_calls_another, .timeout = 60)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid b = start_ok(rt, &b_ops, NULL);
    gs_pid a = start_ok(rt, &a_ops, NULL);
    link_a_to_b(rt, a, b);
    pthread_t th[OUTSIDE];
    struct outside_arg args[OUTSIDE];
    for (int i = 0; i < OUTSIDE; i++) {
        args[i] = (struct outside_arg){.rt = rt, .a = a, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, outside_caller, &args[i]), 0);
    }
    for (int i = 0; i < OUTSIDE; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < OUTSIDE; i++) {
        cr_assert_eq(args[i].errors, 0, "thread %d: %d calls failed (first %d %s)", i,
                     args[i].errors, args[i].first_rc, gs_strerror(args[i].first_rc));
        cr_assert_eq(args[i].wrong, 0, "thread %d: %d wrong results", i, args[i].wrong);
    }
    cr_assert_eq(atomic_load(&g_inner_fail), 0, "A's calls to B failed (first rc %d)",
                 atomic_load(&g_inner_first_rc));
    cr_assert_eq(atomic_load(&g_b_calls), OUTSIDE * CALLS_EACH);
    stop_ok(rt, a);
    stop_ok(rt, b);
    rt_free(rt);
}

Test(nested, inner_call_timeout_then_late_reply_is_not_seen, .timeout = 20)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid b = start_ok(rt, &b_ops, NULL);
    gs_pid a = start_ok(rt, &a_ops, NULL);
    link_a_to_b(rt, a, b);
    for (int round = 0; round < 5; round++) {
        struct inner_result ir;
        memset(&ir, 0, sizeof ir);
        atomic_store(&g_b_late_rc, 12345);
        int rc = gs_call(rt, a, A_INNER_TIMEOUT, NULL, 0, &ir, sizeof ir, NULL, 10000);
        cr_assert_eq(rc, GS_OK, "outer call: %d (%s)", rc, gs_strerror(rc));
        cr_assert_eq(ir.rc1, GS_ETIMEDOUT, "inner call to a server that never replies: %d (%s)",
                     ir.rc1, gs_strerror(ir.rc1));
        cr_assert_geq(ir.took1_ns, 99LL * 1000000, "inner call timed out after %lld us",
                      (long long)(ir.took1_ns / 1000));
        cr_assert_eq(ir.rc2, GS_OK, "second inner call: %d (%s)", ir.rc2, gs_strerror(ir.rc2));
        cr_assert_eq(ir.r2, 11, "second inner call got %" PRId64 " (the late reply is -777)",
                     ir.r2);
        cr_assert_eq(atomic_load(&g_b_late_rc), GS_ENOENT, "late reply gave %d",
                     atomic_load(&g_b_late_rc));
    }
    stop_ok(rt, a);
    stop_ok(rt, b);
    rt_free(rt);
}
