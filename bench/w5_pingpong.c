/* w5_pingpong.c - W5: many ping/pong pairs (parallel Savina PingPong).
 *
 * k pairs. The pinger casts `ping` to its ponger; the ponger answers
 * with a `pong` cast to the message's sender (gs_msg.sender, the pinger).
 * After r round trips the pinger tells the latch how many it made. The
 * main thread starts every pinger and waits on the latch for k arrivals.
 * ops = 2 * k * r messages. Check: the pingers' round trips and the
 * pongers' answered pings (asked by call afterwards) both equal k * r.
 */
#include <stdlib.h>

#include "bench.h"

enum { PP_START = 1, PP_PING, PP_PONG, PP_COUNT };

typedef struct pinger_arg {
    gs_pid ponger, latch;
    int64_t rounds;
} pinger_arg;

typedef struct pinger_state {
    pinger_arg a;
    int64_t done;
} pinger_state;

static int pinger_init(gs_ctx *ctx, void *state, const void *arg)
{
    ((pinger_state *)state)->a = *(const pinger_arg *)arg;
    return GS_OK;
}

static int pinger_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    pinger_state *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (m->tag == PP_PONG) {
        if (++s->done == s->a.rounds)
            return bench_latch_arrive(rt, s->a.latch, s->done) == GS_OK ? GS_OK : GS_ENOMEM;
    } else if (m->tag != PP_START) {
        return GS_OK;
    }
    return gs_cast(rt, s->a.ponger, PP_PING, NULL, 0) == GS_OK ? GS_OK : GS_ENOMEM;
}

static const gs_server_ops pinger_ops = {
    .name = "pinger",
    .state_size = sizeof(pinger_state),
    .init = pinger_init,
    .handle_cast = pinger_cast,
};

static int ponger_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag != PP_PING)
        return GS_OK;
    ++*(int64_t *)state;
    return gs_cast(gs_ctx_runtime(ctx), m->sender, PP_PONG, NULL, 0) == GS_OK ? GS_OK : GS_ENOMEM;
}

static int ponger_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    gs_reply(gs_ctx_runtime(ctx), from, state, sizeof(int64_t));
    return GS_OK;
}

static const gs_server_ops ponger_ops = {
    .name = "ponger",
    .state_size = sizeof(int64_t),
    .handle_cast = ponger_cast,
    .handle_call = ponger_call,
};

void w5_pingpong(bench *b)
{
    int64_t k = bench_param(b, "k"), r = bench_param(b, "r");
    if (!bench_expect(b, k > 0 && r > 0, "need k > 0 and r > 0"))
        return;
    gs_pid latch;
    gs_pid *pingers = calloc((size_t)k, sizeof *pingers), *pongers = calloc((size_t)k, sizeof *pongers);
    if (!bench_expect(b, pingers && pongers, "out of memory") ||
        !bench_ok(b, bench_latch_start(b, &latch), "gs_start latch"))
        goto out;
    for (int64_t i = 0; i < k; i++) {
        if (!bench_ok(b, gs_start(b->rt, &ponger_ops, NULL, &pongers[i]), "gs_start ponger"))
            goto out;
        pinger_arg a = {pongers[i], latch, r};
        if (!bench_ok(b, gs_start(b->rt, &pinger_ops, &a, &pingers[i]), "gs_start pinger"))
            goto out;
    }

    int64_t start = bench_now_ns();
    for (int64_t i = 0; i < k; i++)
        if (!bench_ok(b, gs_cast(b->rt, pingers[i], PP_START, NULL, 0), "start"))
            goto out;
    bench_latch_result done = {0, 0};
    int rc = bench_latch_wait(b->rt, latch, k, BENCH_COMPLETION_TIMEOUT_MS, &done);
    bench_rate(b, 2 * k * r, bench_now_ns() - start);

    int64_t pings = 0;
    for (int64_t i = 0; i < k; i++) {
        int64_t n = 0;
        if (!bench_ok(b, gs_call(b->rt, pongers[i], PP_COUNT, NULL, 0, &n, sizeof n, NULL, 5000), "count"))
            break;
        pings += n;
    }
    bench_set_int(b, "pairs", k);
    bench_set_int(b, "rounds", r);
    bench_ok(b, rc, "waiting for the pairs");
    bench_expect(b, done.sum == k * r, "pingers made %lld round trips, want %lld", (long long)done.sum,
                 (long long)(k * r));
    bench_expect(b, pings == k * r, "pongers answered %lld pings, want %lld", (long long)pings,
                 (long long)(k * r));
out:
    free(pingers);
    free(pongers);
}
