/* test_scale.c - 100,000 servers: start, cast, call, stop. */
#include "common.h"

enum { C_ADD = 1, K_GET = 2 };

#define NSERVERS 100000

static atomic_int g_terminated;

static int sc_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    memcpy(state, arg, sizeof(int64_t));
    return GS_OK;
}

static int sc_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    int64_t add = 0;
    if (msg->tag == C_ADD && msg->len == sizeof add) {
        memcpy(&add, msg->data, sizeof add);
        *(int64_t *)state += add;
    }
    return GS_OK;
}

static int sc_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    (void)msg;
    gs_reply(gs_ctx_runtime(ctx), from, state, sizeof(int64_t));
    return GS_OK;
}

static void sc_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    (void)state;
    (void)reason;
    atomic_fetch_add(&g_terminated, 1);
}

static const gs_server_ops scale_ops = {
    .name = "scale",
    .state_size = sizeof(int64_t),
    .init = sc_init,
    .handle_cast = sc_cast,
    .handle_call = sc_call,
    .terminate = sc_terminate,
};

Test(scale, hundred_thousand_servers, .timeout = 60)
{
    atomic_store(&g_terminated, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid *pids = calloc(NSERVERS, sizeof *pids);
    cr_assert_not_null(pids);
    for (int64_t i = 0; i < NSERVERS; i++) {
        int rc = gs_start(rt, &scale_ops, &i, &pids[i]);
        cr_assert_eq(rc, GS_OK, "server %" PRId64 ": gs_start %d (%s)", i, rc, gs_strerror(rc));
    }
    for (int64_t i = 0; i < NSERVERS; i++) {
        int64_t add = 2 * i + 1;
        int rc = gs_cast(rt, pids[i], C_ADD, &add, sizeof add);
        cr_assert_eq(rc, GS_OK, "server %" PRId64 ": gs_cast %d (%s)", i, rc, gs_strerror(rc));
    }
    int64_t sum = 0;
    for (int64_t i = 0; i < NSERVERS; i++) {
        int64_t v = -1;
        int rc = call_i64(rt, pids[i], K_GET, 0, &v, 10000);
        cr_assert_eq(rc, GS_OK, "server %" PRId64 ": gs_call %d (%s)", i, rc, gs_strerror(rc));
        cr_assert_eq(v, 3 * i + 1, "server %" PRId64 " has %" PRId64, i, v);
        sum += v;
    }
    int64_t n = NSERVERS;
    cr_assert_eq(sum, 3 * (n * (n - 1) / 2) + n);
    for (int64_t i = 0; i < NSERVERS; i++) {
        int rc = gs_stop(rt, pids[i], GS_NORMAL, 10000);
        cr_assert_eq(rc, GS_OK, "server %" PRId64 ": gs_stop %d (%s)", i, rc, gs_strerror(rc));
    }
    cr_assert_eq(atomic_load(&g_terminated), NSERVERS);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_terminated), NSERVERS);
    free(pids);
}
