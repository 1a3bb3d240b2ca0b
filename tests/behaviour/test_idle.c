/* test_idle.c - an idle runtime with 100,000 servers uses (almost) no CPU. */
#include "common.h"

#define NSERVERS 100000

static int idle_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    (void)state;
    (void)msg;
    int64_t one = 1;
    gs_reply(gs_ctx_runtime(ctx), from, &one, sizeof one);
    return GS_OK;
}

static const gs_server_ops idle_ops = {
    .name = "idle",
    .state_size = 16,
    .handle_call = idle_call,
};

Test(idle, hundred_thousand_idle_servers_use_no_cpu, .timeout = 60)
{
    gs_runtime *rt = rt_new(0); /* one worker per CPU */
    gs_pid *pids = calloc(NSERVERS, sizeof *pids);
    cr_assert_not_null(pids);
    for (int i = 0; i < NSERVERS; i++)
        cr_assert_eq(gs_start(rt, &idle_ops, NULL, &pids[i]), GS_OK, "server %d", i);
    /* touch a few so the workers have run */
    for (int i = 0; i < NSERVERS; i += 997) {
        int64_t v = 0;
        cr_assert_eq(call_i64(rt, pids[i], 1, 0, &v, 10000), GS_OK);
    }
    sleep_ms(200); /* let any spinning after the last call end */
    double c0 = proc_cpu_seconds();
    sleep_ms(5000);
    double used = proc_cpu_seconds() - c0;
    cr_assert_lt(used, 0.5, "idle runtime used %.3f s of CPU in 5 s", used);
    /* still responsive */
    int64_t v = 0;
    cr_assert_eq(call_i64(rt, pids[NSERVERS - 1], 1, 0, &v, 10000), GS_OK);
    rt_free(rt);
    free(pids);
}

Test(idle, empty_runtime_uses_no_cpu, .timeout = 20)
{
    gs_runtime *rt = rt_new(2);
    sleep_ms(200);
    double c0 = proc_cpu_seconds();
    sleep_ms(2000);
    double used = proc_cpu_seconds() - c0;
    cr_assert_lt(used, 0.2, "an empty runtime used %.3f s of CPU in 2 s", used);
    rt_free(rt);
}
