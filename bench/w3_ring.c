/* w3_ring.c - W3: token ring (Savina ThreadRing), and the ring shared
 * with W4.
 *
 * r servers in a ring, each knowing the next. A `token` cast carries a
 * count k: a server receiving k = 0 tells the latch that a token has
 * finished; otherwise it counts one hop and casts k - 1 to the next
 * server. The main thread injects the tokens (one for W3, with k = h) and
 * waits on the latch. Check: exactly as many completions as tokens, and
 * the hops counted by all servers add up to tokens * k.
 */
#include <stdlib.h>

#include "bench.h"

enum { RING_TOKEN = 1, RING_LINK, RING_HOPS };

typedef struct ring_state {
    gs_pid next, latch;
    int64_t hops;
} ring_state;

static int ring_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    ring_state *s = state;
    if (m->tag != RING_TOKEN || m->len != sizeof(int64_t))
        return GS_OK;
    int64_t k = *(const int64_t *)m->data;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (k == 0)
        return bench_latch_arrive(rt, s->latch, 0) == GS_OK ? GS_OK : GS_ENOMEM;
    s->hops++;
    k--;
    return gs_cast(rt, s->next, RING_TOKEN, &k, sizeof k) == GS_OK ? GS_OK : GS_ENOMEM;
}

static int ring_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    ring_state *s = state;
    if (m->tag == RING_LINK && m->len == 2 * sizeof(gs_pid)) {
        const gs_pid *p = m->data;
        s->next = p[0];
        s->latch = p[1];
    }
    gs_reply(gs_ctx_runtime(ctx), from, &s->hops, sizeof s->hops);
    return GS_OK;
}

static const gs_server_ops ring_ops = {
    .name = "ring",
    .state_size = sizeof(ring_state),
    .handle_cast = ring_cast,
    .handle_call = ring_call,
};

void bench_ring(bench *b, int64_t servers, int64_t tokens, int64_t k)
{
    if (!bench_expect(b, servers > 0 && tokens > 0 && k >= 0, "need r > 0, tokens > 0, k >= 0"))
        return;
    gs_pid latch;
    gs_pid *ring = calloc((size_t)servers, sizeof *ring);
    if (!bench_expect(b, ring != NULL, "out of memory") ||
        !bench_ok(b, bench_latch_start(b, &latch), "gs_start latch"))
        goto out;
    for (int64_t i = 0; i < servers; i++)
        if (!bench_ok(b, gs_start(b->rt, &ring_ops, NULL, &ring[i]), "gs_start ring"))
            goto out;
    for (int64_t i = 0; i < servers; i++) {
        gs_pid link[2] = {ring[(i + 1) % servers], latch};
        int64_t h;
        if (!bench_ok(b, gs_call(b->rt, ring[i], RING_LINK, link, sizeof link, &h, sizeof h, NULL, 5000),
                      "link"))
            goto out;
    }

    int64_t start = bench_now_ns();
    for (int64_t t = 0; t < tokens; t++)
        if (!bench_ok(b, gs_cast(b->rt, ring[t * servers / tokens], RING_TOKEN, &k, sizeof k), "inject"))
            goto out;
    bench_latch_result done = {0, 0};
    int rc = bench_latch_wait(b->rt, latch, tokens, BENCH_COMPLETION_TIMEOUT_MS, &done);
    int64_t elapsed = bench_now_ns() - start;
    bench_rate(b, tokens * k, elapsed);

    int64_t hops = 0;
    for (int64_t i = 0; i < servers; i++) {
        int64_t h = 0;
        if (!bench_ok(b, gs_call(b->rt, ring[i], RING_HOPS, NULL, 0, &h, sizeof h, NULL, 5000), "hops"))
            break;
        hops += h;
    }
    bench_latch_result after = {0, 0};
    bench_ok(b, bench_latch_peek(b->rt, latch, &after), "latch peek");
    bench_set_int(b, "servers", servers);
    bench_set_int(b, "tokens", tokens);
    bench_set_int(b, "hops", hops);
    bench_ok(b, rc, "waiting for the tokens");
    bench_expect(b, hops == tokens * k, "servers passed on %lld hops, want %lld", (long long)hops,
                 (long long)(tokens * k));
    bench_expect(b, after.count == tokens, "%lld completions, want %lld", (long long)after.count,
                 (long long)tokens);
out:
    free(ring);
}

void w3_ring(bench *b)
{
    bench_ring(b, bench_param(b, "r"), 1, bench_param(b, "h"));
}
