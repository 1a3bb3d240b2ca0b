/* Timers at their limit: with GS_TIMERS_MAX timers held, gs_send_after
 * refuses more (GS_EAGAIN), gs_send_request with a timeout from a
 * callback refuses too (nothing sent),
 * and a call from a callback still times out: its timeout waits in the
 * worker's list of deferred timeouts and the call is completed from
 * there once its deadline has passed (scheduler.c). About 2 GiB. */
#include "common.h"

static int hold_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    return GS_NOREPLY; /* never answers */
}

static const gs_server_ops mute_ops = {.name = "mute", .handle_call = hold_call};

static _Atomic gs_pid mute;
static atomic_int call_rc = 1;
static _Atomic int64_t call_ns = -1;

static atomic_int request_rc = 1;

static int caller_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == 2) {
        gs_request req = 0;
        atomic_store(&request_rc,
                     gs_send_request(gs_ctx_runtime(ctx), atomic_load(&mute), 1, NULL, 0, 100, &req));
        return GS_OK;
    }
    int64_t t0 = now_ns();
    int rc = gs_call(gs_ctx_runtime(ctx), atomic_load(&mute), 1, NULL, 0, NULL, 0, NULL, 100);
    atomic_store(&call_ns, now_ns() - t0);
    atomic_store(&call_rc, rc);
    return GS_OK;
}

static const gs_server_ops caller_ops = {.name = "caller", .handle_cast = caller_cast};

Test(timer_limits, a_call_from_a_callback_times_out_with_every_timer_record_taken, .timeout = 300)
{
    gs_runtime *rt = rt_new(2);
    atomic_store(&mute, start_ok(rt, &mute_ops, NULL));
    gs_pid caller = start_ok(rt, &caller_ops, NULL);
    uint64_t armed = 0;
    int rc;
    while ((rc = gs_send_after(rt, atomic_load(&mute), 1, NULL, 0, 3600 * 1000, NULL)) == GS_OK)
        armed++;
    cr_assert_eq(rc, GS_EAGAIN, "arming stopped with %d", rc);
    cr_assert_geq(armed, (uint64_t)GS_TIMERS_MAX - 4096, "only %llu timers armed", (unsigned long long)armed);
    cr_assert_eq(gs_cast(rt, caller, 2, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&request_rc, GS_EAGAIN, 5000),
              "a request from a callback whose timeout cannot be armed gave %d, not GS_EAGAIN",
              atomic_load(&request_rc));
    cr_assert_eq(gs_cast(rt, caller, 1, NULL, 0), GS_OK);
    int64_t until = now_ns() + 10 * 1000000000LL;
    while (atomic_load(&call_rc) == 1 && now_ns() < until)
        sleep_ms(5);
    cr_assert_eq(atomic_load(&call_rc), GS_ETIMEDOUT, "the call returned %d", atomic_load(&call_rc));
    int64_t ms = atomic_load(&call_ns) / 1000000;
    cr_assert(ms >= 100 && ms < 2000, "timed out after %lld ms, asked 100", (long long)ms);
    rt_free(rt);
}
