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

/* Servers that cast to themselves keep their workers' own queues full
 * (each goes back to its ring after its batch). A server woken from
 * outside the pool waits in the global queue, which a worker looks at
 * first now and then: before, with both workers busy that way, an outside
 * cast waited until the self-casters stopped (seconds, in every run). */
static atomic_int self_casting, outside_handled;

static int selfcaster_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (atomic_load(&self_casting))
        (void)gs_cast(gs_ctx_runtime(ctx), gs_self(ctx), NOTE, NULL, 0);
    return GS_OK;
}

static int outside_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    atomic_fetch_add(&outside_handled, 1);
    return GS_OK;
}

static const gs_server_ops selfcaster_ops = {.name = "self-caster", .handle_cast = selfcaster_cast};
static const gs_server_ops outside_ops = {.name = "woken-from-outside", .handle_cast = outside_cast};

Test(sched, busy_workers_still_run_servers_woken_from_outside, .timeout = 60)
{
    atomic_store(&self_casting, 1);
    atomic_store(&outside_handled, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid quiet = start_ok(rt, &outside_ops, NULL);
    gs_pid busy[4];
    for (int i = 0; i < 4; i++) {
        busy[i] = start_ok(rt, &selfcaster_ops, NULL);
        cr_assert_eq(gs_cast(rt, busy[i], NOTE, NULL, 0), GS_OK);
    }
    sleep_ms(50); /* both workers are on self-casters now */
    int64_t t0 = now_ns();
    for (int i = 0; i < 100; i++)
        cr_assert_eq(gs_cast(rt, quiet, NOTE, NULL, 0), GS_OK);
    bool all = wait_int_eq(&outside_handled, 100, 2000);
    int64_t waited_ms = (now_ns() - t0) / 1000000;
    int got = atomic_load(&outside_handled);
    atomic_store(&self_casting, 0);
    cr_assert(all, "%d of 100 outside casts handled in %lld ms beside self-casting servers", got,
              (long long)waited_ms);
    rt_free(rt);
}
