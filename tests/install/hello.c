/* Built against the installed library only: one server, a cast, a call. */
#include <genserver.h>
#include <stdint.h>
#include <stdio.h>

static int add(gs_ctx *ctx, void *state, const gs_msg *m)
{
    (void)ctx;
    *(int64_t *)state += *(const int64_t *)m->data;
    return GS_OK;
}

static int get(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    (void)m;
    return gs_reply(gs_ctx_runtime(ctx), from, state, sizeof(int64_t));
}

static const gs_server_ops adder = {.name = "adder", .state_size = sizeof(int64_t), .handle_cast = add, .handle_call = get};

int main(void)
{
    gs_runtime *rt;
    gs_pid pid;
    int64_t n = 0, five = 5;
    if (gs_runtime_start(&rt, NULL) != GS_OK || gs_start(rt, &adder, NULL, &pid) != GS_OK)
        return 1;
    if (gs_cast(rt, pid, 1, &five, sizeof five) != GS_OK ||
        gs_call(rt, pid, 2, NULL, 0, &n, sizeof n, NULL, 5000) != GS_OK || n != 5)
        return 1;
    if (gs_stop(rt, pid, GS_NORMAL, 5000) != GS_OK || gs_runtime_stop(rt) != GS_OK)
        return 1;
    printf("installed genserver works: %lld\n", (long long)n);
    return 0;
}
