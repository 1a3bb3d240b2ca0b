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

/* A server that uses up its batch and is all its worker has to run goes
 * straight back to that worker: the other, parked, worker is not woken
 * for it (it could only find nothing, or steal the server). A flood of
 * casts queued behind a blocked callback is handled in turns of at most
 * SERVER_BATCH messages, each ending in a re-queue: 50 of them here. */
enum { FLOOD = 3200 };
static atomic_int flood_gate, flood_blocked, flood_handled;

static int flood_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == WAKE_AND_BLOCK) {
        atomic_store(&flood_blocked, 1);
        while (!atomic_load(&flood_gate))
            sleep_ms(1);
    } else {
        atomic_fetch_add(&flood_handled, 1);
    }
    return GS_OK;
}

static const gs_server_ops flood_ops = {.name = "flooded", .handle_cast = flood_cast};

Test(sched, a_server_requeued_alone_wakes_nobody, .timeout = 30)
{
    atomic_store(&flood_gate, 0);
    atomic_store(&flood_blocked, 0);
    atomic_store(&flood_handled, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid s = start_ok(rt, &flood_ops, NULL);
    cr_assert_eq(gs_cast(rt, s, WAKE_AND_BLOCK, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&flood_blocked, 1, 5000));
    for (int i = 0; i < FLOOD; i++) /* the server is running: no scheduling, no wake-up */
        cr_assert_eq(gs_cast(rt, s, NOTE, NULL, 0), GS_OK);
    sleep_ms(100); /* the other worker has given up spinning and parked */
    gs_runtime_stats before, after;
    cr_assert_eq(gs_runtime_stats_get(rt, &before), GS_OK);
    atomic_store(&flood_gate, 1);
    cr_assert(wait_int_eq(&flood_handled, FLOOD, 10000));
    sleep_ms(100); /* the busy worker parks too */
    cr_assert_eq(gs_runtime_stats_get(rt, &after), GS_OK);
    /* The busy worker parks once at the end; a woken one would park
     * again after each of the 50 re-queues it was woken for. */
    cr_assert_leq(after.parks - before.parks, 3, "%llu parks while one server worked through its mailbox",
                  (unsigned long long)(after.parks - before.parks));
    rt_free(rt);
}
