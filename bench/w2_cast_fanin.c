/* w2_cast_fanin.c - W2: N:1 asynchronous messaging, producers inside the
 * runtime.
 *
 * One counter server and p producer servers. The main thread casts `go`
 * to every producer; a producer then casts m `incr` to the counter in
 * batches of `batch`, casting itself `more` after each batch so that it
 * gives its worker back between batches (a server's callback that loops
 * for a million sends would hold the worker the whole time). A producer
 * that has sent all m tells a latch server. The main thread waits on the
 * latch for p arrivals, then calls `get`, which must return p * m. Timed
 * from the first `go` to the reply of `get`.
 *
 * The counter server and the cast_fanin_threads variant (w2b) share the
 * same counter definition below.
 */
#include "bench.h"

enum { W2_INCR = 1, W2_GET, W2_GO, W2_MORE };

static int counter_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == W2_INCR)
        ++*(int64_t *)state;
    return GS_OK;
}

static int counter_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    gs_reply(gs_ctx_runtime(ctx), from, state, sizeof(int64_t));
    return GS_OK;
}

const gs_server_ops w2_counter_ops = {
    .name = "w2_counter",
    .state_size = sizeof(int64_t),
    .handle_cast = counter_cast,
    .handle_call = counter_call,
};

/* w2b uses it too */
int64_t w2_get(bench *b, gs_pid counter);
int64_t w2_get(bench *b, gs_pid counter)
{
    int64_t n = -1;
    bench_ok(b, gs_call(b->rt, counter, W2_GET, NULL, 0, &n, sizeof n, NULL, BENCH_COMPLETION_TIMEOUT_MS),
             "get");
    return n;
}

int w2_incr(gs_runtime *rt, gs_pid counter);
int w2_incr(gs_runtime *rt, gs_pid counter)
{
    return gs_cast(rt, counter, W2_INCR, NULL, 0);
}

typedef struct producer_job {
    gs_pid counter, latch;
    int64_t m, batch;
} producer_job;

typedef struct producer_state {
    producer_job job;
    int64_t left;
    int64_t errors;
} producer_state;

static int producer_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    producer_state *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (m->tag == W2_GO && m->len == sizeof(producer_job)) {
        s->job = *(const producer_job *)m->data;
        s->left = s->job.m;
    } else if (m->tag != W2_MORE) {
        return GS_OK;
    }
    int64_t n = s->left < s->job.batch ? s->left : s->job.batch;
    for (int64_t i = 0; i < n; i++)
        if (gs_cast(rt, s->job.counter, W2_INCR, NULL, 0) != GS_OK)
            s->errors++;
    s->left -= n;
    if (s->left > 0)
        return gs_cast(rt, gs_self(ctx), W2_MORE, NULL, 0) == GS_OK ? GS_OK : GS_ENOMEM;
    /* done: report the failed sends as the arrival's value */
    bench_latch_arrive(rt, s->job.latch, s->errors);
    return GS_OK;
}

static const gs_server_ops producer_ops = {
    .name = "w2_producer",
    .state_size = sizeof(producer_state),
    .handle_cast = producer_cast,
};

void w2_cast_fanin(bench *b)
{
    int64_t p = bench_param(b, "p"), m = bench_param(b, "m"), batch = bench_param(b, "batch");
    if (!bench_expect(b, p > 0 && p <= 4096 && batch > 0, "need 0 < p <= 4096 and batch > 0"))
        return;
    gs_pid counter, latch, prod[4096];
    if (!bench_ok(b, gs_start(b->rt, &w2_counter_ops, NULL, &counter), "gs_start counter") ||
        !bench_ok(b, bench_latch_start(b, &latch), "gs_start latch"))
        return;
    for (int64_t i = 0; i < p; i++)
        if (!bench_ok(b, gs_start(b->rt, &producer_ops, NULL, &prod[i]), "gs_start producer"))
            return;

    producer_job job = {counter, latch, m, batch};
    int64_t start = bench_now_ns();
    for (int64_t i = 0; i < p; i++)
        if (!bench_ok(b, gs_cast(b->rt, prod[i], W2_GO, &job, sizeof job), "cast go"))
            return;
    bench_latch_result done = {0, 0};
    int rc = bench_latch_wait(b->rt, latch, p, BENCH_COMPLETION_TIMEOUT_MS, &done);
    int64_t got = rc == GS_OK ? w2_get(b, counter) : -1;
    int64_t elapsed = bench_now_ns() - start;

    bench_rate(b, p * m, elapsed);
    bench_set_int(b, "producers", p);
    bench_set_str(b, "producers_are", "servers");
    bench_set_int(b, "batch", batch);
    bench_set_int(b, "count", got);
    bench_ok(b, rc, "waiting for the producers");
    bench_expect(b, done.sum == 0, "%lld casts to the counter failed", (long long)done.sum);
    bench_expect(b, got == p * m, "get replied %lld, want %lld", (long long)got, (long long)(p * m));
}
