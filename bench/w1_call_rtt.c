/* w1_call_rtt.c - W1: synchronous call round trip.
 *
 * One counter server; the main thread (not a server) makes `warmup`
 * unrecorded calls and then n timed calls of incr_and_get, one at a time,
 * each with a timeout of timeout_ms (0: GS_INFINITY). Each call's latency
 * is measured on its own. Check: the last reply is n + warmup.
 */
#include <stdlib.h>

#include "bench.h"

enum { W1_INCR_AND_GET = 1 };

static int counter_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    int64_t *n = state;
    if (m->tag != W1_INCR_AND_GET)
        return GS_EINVAL;
    ++*n;
    gs_reply(gs_ctx_runtime(ctx), from, n, sizeof *n);
    return GS_OK;
}

static const gs_server_ops counter_ops = {
    .name = "w1_counter",
    .state_size = sizeof(int64_t),
    .handle_call = counter_call,
};

void w1_call_rtt(bench *b)
{
    int64_t n = bench_param(b, "n"), warmup = bench_param(b, "warmup");
    int64_t tmo = bench_param(b, "timeout_ms");
    int timeout = tmo <= 0 ? GS_INFINITY : (int)tmo;
    gs_pid c;
    if (!bench_ok(b, gs_start(b->rt, &counter_ops, NULL, &c), "gs_start"))
        return;
    int64_t *lat = malloc((size_t)(n > 0 ? n : 1) * sizeof *lat);
    if (!bench_expect(b, lat != NULL, "out of memory"))
        return;
    for (int64_t i = 0; i < n; i++) /* touch the pages before timing */
        lat[i] = 0;

    int64_t v = 0;
    for (int64_t i = 0; i < warmup; i++) {
        int rc = gs_call(b->rt, c, W1_INCR_AND_GET, NULL, 0, &v, sizeof v, NULL, timeout);
        if (!bench_ok(b, rc, "warm-up call"))
            goto out;
    }
    int64_t start = bench_now_ns(), t0 = start;
    for (int64_t i = 0; i < n; i++) {
        int rc = gs_call(b->rt, c, W1_INCR_AND_GET, NULL, 0, &v, sizeof v, NULL, timeout);
        int64_t t1 = bench_now_ns();
        lat[i] = t1 - t0;
        t0 = t1;
        if (rc != GS_OK) {
            bench_expect(b, false, "call %lld: %s", (long long)i, gs_strerror(rc));
            goto out;
        }
    }
    bench_rate(b, n, t0 - start);
    bench_latencies(b, lat, (size_t)n);
    bench_set_int(b, "timeout_ms", tmo);
    bench_set_str(b, "client", "main thread");
    bench_set_int(b, "last", v);
    bench_expect(b, v == n + warmup, "last reply %lld, want %lld", (long long)v, (long long)(n + warmup));
out:
    free(lat);
}
