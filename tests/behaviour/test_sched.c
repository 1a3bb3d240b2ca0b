/* Scheduling: a server made runnable by a callback that then runs long is
 * not stranded behind it while another worker is idle. */
#include "common.h"

enum { WAKE_AND_BLOCK = 1, NOTE = 2 };

static atomic_int gate, b_ran, a_blocked;
static _Atomic gs_pid b_pid;

static int a_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    /* B goes to this worker's LIFO slot; then this callback runs long. */
    gs_cast(gs_ctx_runtime(ctx), atomic_load(&b_pid), NOTE, NULL, 0);
    atomic_store(&a_blocked, 1);
    int64_t until = now_ms() + 5000;
    while (!atomic_load(&gate) && now_ms() < until)
        ; /* busy, as a long computation would be */
    return GS_OK;
}

static int b_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    atomic_store(&b_ran, 1);
    return GS_OK;
}

static const gs_server_ops a_ops = {.name = "long-runner", .handle_cast = a_cast};
static const gs_server_ops b_ops = {.name = "woken", .handle_cast = b_cast};

Test(sched, woken_server_runs_while_its_waker_computes, .timeout = 30)
{
    atomic_store(&gate, 0);
    atomic_store(&b_ran, 0);
    atomic_store(&a_blocked, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &a_ops, NULL);
    atomic_store(&b_pid, start_ok(rt, &b_ops, NULL));
    sleep_ms(100); /* both workers idle and parked */
    cr_assert_eq(gs_cast(rt, a, WAKE_AND_BLOCK, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&a_blocked, 1, 5000));
    bool ran = wait_int_eq(&b_ran, 1, 3000);
    int still_blocked = !atomic_load(&gate);
    atomic_store(&gate, 1);
    cr_assert(ran && still_blocked, "the woken server waited for its waker's long callback");
    rt_free(rt);
}
