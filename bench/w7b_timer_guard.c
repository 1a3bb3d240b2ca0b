/* w7b_timer_guard.c - W7b (not in WORKLOADS.md): the guard-timeout
 * pattern. One outside thread arms a timer of delay_ms on a server and
 * cancels it at once, n times: what a request guarded by a timeout costs
 * when the answer comes first. Every cancel must return GS_OK and nothing
 * may be delivered. Reports the arming thread's wall and CPU time per
 * arm+cancel and the whole process's CPU time per arm+cancel (the timer
 * thread's and workers' share included), measured over the loop and a
 * settle_ms pause after it.
 */
#include <time.h>

#include "bench.h"

static int guard_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    (void)ctx;
    (void)m;
    (*(int64_t *)state)++;
    return GS_OK;
}

static int guard_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    (void)m;
    gs_reply(gs_ctx_runtime(ctx), from, state, sizeof(int64_t));
    return GS_OK;
}

static const gs_server_ops guard_ops = {.name = "w7b_guarded",
                                        .state_size = sizeof(int64_t),
                                        .handle_info = guard_info,
                                        .handle_call = guard_call};

void w7b_timer_guard(bench *b)
{
    int64_t n = bench_param(b, "n");
    int64_t delay_ms = bench_param(b, "delay_ms");
    int64_t settle_ms = bench_param(b, "settle_ms");
    if (!bench_expect(b, n > 0, "need n > 0") ||
        !bench_expect(b, delay_ms >= 0 && delay_ms <= 3600000, "need 0 <= delay_ms <= 3600000") ||
        !bench_expect(b, settle_ms >= 0 && settle_ms <= 10000, "need 0 <= settle_ms <= 10000"))
        return;
    gs_pid s;
    if (!bench_ok(b, gs_start(b->rt, &guard_ops, NULL, &s), "gs_start"))
        return;
    int64_t failed = 0, first_rc = GS_OK;
    int64_t start = bench_now_ns(), thread0 = bench_clock_ns(CLOCK_THREAD_CPUTIME_ID),
            proc0 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (int64_t i = 0; i < n; i++) {
        gs_timer t;
        int rc = gs_send_after(b->rt, s, 1, &i, sizeof i, (int)delay_ms, &t);
        if (rc == GS_OK)
            rc = gs_cancel_timer(b->rt, t);
        if (rc != GS_OK && failed++ == 0)
            first_rc = rc;
    }
    int64_t wall = bench_now_ns() - start, thread = bench_clock_ns(CLOCK_THREAD_CPUTIME_ID) - thread0;
    bench_sleep_ms((int)settle_ms);
    int64_t proc = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - proc0;
    int64_t delivered = -1;
    bench_ok(b, gs_call(b->rt, s, 0, NULL, 0, &delivered, sizeof delivered, NULL, 5000), "count");
    bench_rate(b, n, wall);
    bench_set_num(b, "ns_per_op", (double)wall / (double)n);
    bench_set_num(b, "arming_cpu_ns_per_op", (double)thread / (double)n);
    bench_set_num(b, "process_cpu_ns_per_op", (double)proc / (double)n);
    bench_expect(b, failed == 0, "%lld arms or cancels failed (first: %s)", (long long)failed,
                 gs_strerror((int)first_rc));
    bench_expect(b, delivered == 0, "%lld cancelled timers delivered", (long long)delivered);
}
