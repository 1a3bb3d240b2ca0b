/* w9_server_call.c - W9: gs_call from one server to another.
 *
 * A gs_call made inside a callback suspends the calling server (its
 * callback's stack is set aside) and hands the worker back; the reply
 * resumes it. This workload measures what that costs, against the plain
 * cast round trip it replaces (cast there, cast back):
 *
 *  (a) hot round trip: one caller server and one callee server, in a
 *      runtime of their own with `rtt_workers` = 1 worker (0: the main
 *      runtime, with --workers). The main thread calls the caller `go(n)`;
 *      its handle_call makes `warmup` untimed, then n = 1,000,000 timed
 *      sequential gs_calls of `incr` to the callee, timed inside the
 *      callback: call_rtt_ns = time / n. Then the same pair makes n cast
 *      round trips (ping to the callee, pong back; the caller's deferred
 *      reply to the main thread comes with the last pong): cast_rtt_ns.
 *      With a finite timeout_ms, n more calls without one (GS_INFINITY)
 *      give call_rtt_no_timeout_ns: the difference is the price of the
 *      timer each call arms on the runtime's wheel.
 *  (b) k = 1,000 caller/callee pairs in the main runtime (all workers):
 *      the main thread casts `go` to every caller, each makes m = 1,000
 *      sequential gs_calls in one handle_cast and arrives at the latch.
 *      Timed from the first `go` to the latch's answer: ops = k * m calls,
 *      ops_per_sec = calls per second (the table's figure).
 *  (c) the same pairs, m cast round trips each, timed the same way:
 *      cast_rtt_per_sec. suspension_cost = (b's ns per call) / (c's ns per
 *      round trip): how much dearer a call is than the round trip of two
 *      casts it replaces (1.0: no dearer).
 *
 * Calls carry a `timeout_ms` = 5000 timeout (0: GS_INFINITY), as W1.
 * Checks, all exact: every call returns GS_OK with the callee's count
 * (which the caller predicts: 1, 2, 3, ...); every pong arrives; each
 * callee has handled exactly the calls and pings sent to it (asked by call
 * afterwards); the latch sees k arrivals with k * m successes per phase;
 * no call held its worker (gs_runtime_stats calls_blocked does not grow).
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum { SC_GO_CALLS = 1, SC_GO_CASTS, SC_INCR, SC_PING, SC_PONG, SC_COUNT };

/* What a caller did, written by its callbacks and read by the main thread
 * after the latch (or the caller's deferred reply) says it is done. */
typedef struct sc_record {
    int64_t ok, bad;   /* calls / round trips that returned what was predicted, and the others */
    int64_t first_bad; /* the status (or value) of the first bad one */
    int64_t ns;        /* duration of the last run, inside the callbacks */
} sc_record;

typedef struct sc_arg {
    gs_pid callee, latch; /* latch: GS_NOPID when `go` comes as a call */
    sc_record *rec;
    int timeout_ms;
} sc_arg;

/* `go` as a call: how many, and the calls' timeout. */
typedef struct sc_go {
    int64_t n;
    int timeout_ms;
} sc_go;

typedef struct caller_state {
    sc_arg a;
    int64_t predicted; /* the callee's count as this caller knows it */
    int64_t left;      /* cast round trips still to make */
    int64_t t0;
    bool has_from;
    gs_from from; /* the main thread's `go` call, answered at the end */
} caller_state;

static int caller_init(gs_ctx *ctx, void *state, const void *arg)
{
    ((caller_state *)state)->a = *(const sc_arg *)arg;
    return GS_OK;
}

/* Reports the end of a run: the deferred reply, or a latch arrival. */
static int caller_done(gs_ctx *ctx, caller_state *s)
{
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (s->has_from) {
        s->has_from = false;
        gs_reply(rt, s->from, s->a.rec, sizeof *s->a.rec);
        return GS_OK;
    }
    return bench_latch_arrive(rt, s->a.latch, s->a.rec->ok) == GS_OK ? GS_OK : GS_ENOMEM;
}

static void run_calls(gs_ctx *ctx, caller_state *s, int64_t n, int timeout_ms)
{
    gs_runtime *rt = gs_ctx_runtime(ctx);
    sc_record *r = s->a.rec;
    r->ok = r->bad = 0;
    int64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < n; i++) {
        int64_t v = -1;
        int rc = gs_call(rt, s->a.callee, SC_INCR, NULL, 0, &v, sizeof v, NULL, timeout_ms);
        if (rc == GS_OK && v == s->predicted + 1) {
            r->ok++;
        } else if (r->bad++ == 0) {
            r->first_bad = rc != GS_OK ? rc : v;
        }
        if (rc == GS_OK)
            s->predicted = v;
    }
    r->ns = bench_now_ns() - t0;
}

static int start_casts(gs_ctx *ctx, caller_state *s, int64_t n)
{
    s->a.rec->ok = s->a.rec->bad = 0;
    s->left = n;
    s->t0 = bench_now_ns();
    if (n == 0) {
        s->a.rec->ns = 0;
        return caller_done(ctx, s);
    }
    return gs_cast(gs_ctx_runtime(ctx), s->a.callee, SC_PING, NULL, 0) == GS_OK ? GS_OK : GS_ENOMEM;
}

static int caller_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    caller_state *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    sc_go go = {0, s->a.timeout_ms};
    if (m->len == sizeof go)
        memcpy(&go, m->data, sizeof go);
    int64_t n = go.n;
    if (m->tag == SC_GO_CALLS) {
        run_calls(ctx, s, n, go.timeout_ms);
        gs_reply(rt, from, s->a.rec, sizeof *s->a.rec);
        return GS_OK;
    }
    if (m->tag == SC_GO_CASTS) {
        s->has_from = true;
        s->from = from;
        int rc = start_casts(ctx, s, n);
        return rc == GS_OK ? GS_NOREPLY : rc;
    }
    gs_reply(rt, from, NULL, 0);
    return GS_OK;
}

static int caller_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    caller_state *s = state;
    int64_t n = m->len == sizeof(int64_t) ? *(const int64_t *)m->data : 0;
    switch (m->tag) {
    case SC_GO_CALLS:
        run_calls(ctx, s, n, s->a.timeout_ms);
        return caller_done(ctx, s);
    case SC_GO_CASTS:
        return start_casts(ctx, s, n);
    case SC_PONG: {
        sc_record *r = s->a.rec;
        int64_t v = m->len == sizeof(int64_t) ? *(const int64_t *)m->data : -1;
        if (v == s->predicted + 1)
            r->ok++;
        else if (r->bad++ == 0)
            r->first_bad = v;
        s->predicted = v;
        if (--s->left > 0)
            return gs_cast(gs_ctx_runtime(ctx), s->a.callee, SC_PING, NULL, 0) == GS_OK ? GS_OK : GS_ENOMEM;
        r->ns = bench_now_ns() - s->t0;
        return caller_done(ctx, s);
    }
    default:
        return GS_OK;
    }
}

static const gs_server_ops caller_ops = {
    .name = "w9_caller",
    .state_size = sizeof(caller_state),
    .init = caller_init,
    .handle_call = caller_call,
    .handle_cast = caller_cast,
};

/* The callee: a counter. `incr` calls and `ping` casts both count and
 * answer with the new count. */
static int callee_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    int64_t *count = state;
    if (m->tag == SC_INCR)
        ++*count;
    gs_reply(gs_ctx_runtime(ctx), from, count, sizeof *count);
    return GS_OK;
}

static int callee_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    int64_t *count = state;
    if (m->tag != SC_PING)
        return GS_OK;
    ++*count;
    return gs_cast(gs_ctx_runtime(ctx), m->sender, SC_PONG, count, sizeof *count) == GS_OK ? GS_OK : GS_ENOMEM;
}

static const gs_server_ops callee_ops = {
    .name = "w9_callee",
    .state_size = sizeof(int64_t),
    .handle_call = callee_call,
    .handle_cast = callee_cast,
};

static int64_t callee_count(gs_runtime *rt, gs_pid callee)
{
    int64_t v = -1;
    return gs_call(rt, callee, SC_COUNT, NULL, 0, &v, sizeof v, NULL, 5000) == GS_OK ? v : -1;
}

/* ---- (a) one pair, hot ------------------------------------------------ */

static bool go_call(bench *b, gs_runtime *rt, gs_pid caller, uint32_t tag, int64_t n, int timeout_ms,
                    sc_record *out)
{
    sc_go go = {n, timeout_ms};
    int rc = gs_call(rt, caller, tag, &go, sizeof go, out, sizeof *out, NULL, BENCH_COMPLETION_TIMEOUT_MS);
    return bench_ok(b, rc, tag == SC_GO_CALLS ? "hot calls" : "hot cast round trips") &&
           bench_expect(b, out->ok == n && out->bad == 0, "hot %s: %lld of %lld as predicted (first bad: %lld)",
                        tag == SC_GO_CALLS ? "calls" : "cast round trips", (long long)out->ok, (long long)n,
                        (long long)out->first_bad);
}

static void hot_pair(bench *b, int64_t n, int64_t warmup, int timeout_ms)
{
    int64_t want_workers = bench_param(b, "rtt_workers");
    gs_runtime *rt = b->rt;
    unsigned workers = b->workers;
    if (want_workers > 0) {
        gs_runtime_opts o = {.workers = (unsigned)want_workers};
        if (!bench_ok(b, gs_runtime_start(&rt, &o), "gs_runtime_start (hot pair)"))
            return;
        workers = (unsigned)want_workers;
    }
    sc_record rec = {0}, out;
    gs_pid callee, caller;
    if (bench_ok(b, gs_start(rt, &callee_ops, NULL, &callee), "gs_start callee") &&
        bench_ok(b, gs_start(rt, &caller_ops, &(sc_arg){callee, GS_NOPID, &rec, timeout_ms}, &caller),
                 "gs_start caller")) {
        gs_runtime_stats st0, st1;
        gs_runtime_stats_get(rt, &st0);
        double call_ns = 0, call_inf_ns = 0, cast_ns = 0;
        int64_t calls = warmup + n;
        if (go_call(b, rt, caller, SC_GO_CALLS, warmup, timeout_ms, &out) &&
            go_call(b, rt, caller, SC_GO_CALLS, n, timeout_ms, &out))
            call_ns = (double)out.ns / (double)n;
        if (timeout_ms != GS_INFINITY && go_call(b, rt, caller, SC_GO_CALLS, n, GS_INFINITY, &out)) {
            call_inf_ns = (double)out.ns / (double)n; /* the same without a timer per call */
            calls += n;
        }
        gs_runtime_stats_get(rt, &st1);
        if (go_call(b, rt, caller, SC_GO_CASTS, warmup, timeout_ms, &out) &&
            go_call(b, rt, caller, SC_GO_CASTS, n, timeout_ms, &out))
            cast_ns = (double)out.ns / (double)n;
        int64_t got = callee_count(rt, callee);
        bench_expect(b, got == calls + warmup + n, "hot callee counted %lld, want %lld", (long long)got,
                     (long long)(calls + warmup + n));
        bench_set_int(b, "rtt_workers", workers);
        bench_set_int(b, "rtt_n", n);
        bench_set_num(b, "call_rtt_ns", call_ns);
        if (timeout_ms != GS_INFINITY)
            bench_set_num(b, "call_rtt_no_timeout_ns", call_inf_ns);
        bench_set_num(b, "cast_rtt_ns", cast_ns);
        bench_set_num(b, "rtt_suspension_cost", cast_ns > 0 ? call_ns / cast_ns : 0);
        bench_set_int(b, "rtt_calls_suspended", (int64_t)(st1.calls_suspended - st0.calls_suspended));
        bench_expect(b, st1.calls_blocked == st0.calls_blocked, "hot pair: %llu calls held their worker",
                     (unsigned long long)(st1.calls_blocked - st0.calls_blocked));
    }
    if (rt != b->rt)
        bench_ok(b, gs_runtime_stop(rt), "gs_runtime_stop (hot pair)");
}

/* ---- (b) and (c): k pairs ----------------------------------------------- */

/* Casts `tag`(m) to every caller and waits for k more latch arrivals.
 * Returns the elapsed time, or -1. */
static int64_t pairs_run(bench *b, gs_pid latch, const gs_pid *callers, int64_t k, int64_t m, uint32_t tag,
                         int64_t *arrived_so_far, int64_t *ok_so_far)
{
    int64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < k; i++)
        if (!bench_ok(b, gs_cast(b->rt, callers[i], tag, &m, sizeof m), "gs_cast go"))
            return -1;
    bench_latch_result res = {0, 0};
    int rc = bench_latch_wait(b->rt, latch, *arrived_so_far + k, BENCH_COMPLETION_TIMEOUT_MS, &res);
    int64_t ns = bench_now_ns() - t0;
    const char *what = tag == SC_GO_CALLS ? "calls" : "cast round trips";
    if (!bench_ok(b, rc, what))
        return -1;
    bench_expect(b, res.count == *arrived_so_far + k, "%s: %lld arrivals, want %lld", what,
                 (long long)(res.count - *arrived_so_far), (long long)k);
    bench_expect(b, res.sum - *ok_so_far == k * m, "%s: %lld as predicted, want %lld", what,
                 (long long)(res.sum - *ok_so_far), (long long)(k * m));
    *arrived_so_far = res.count;
    *ok_so_far = res.sum;
    return ns;
}

void w9_server_call(bench *b)
{
    int64_t n = bench_param(b, "n"), warmup = bench_param(b, "warmup");
    int64_t k = bench_param(b, "k"), m = bench_param(b, "m");
    int64_t tmo = bench_param(b, "timeout_ms");
    int64_t rw = bench_param(b, "rtt_workers");
    if (!bench_expect(b, n > 0 && warmup >= 0 && k > 0 && m > 0 && k <= 1000000, "need n, k, m > 0") ||
        !bench_expect(b, tmo >= 0 && tmo <= GS_TIMEOUT_MAX_MS, "need 0 <= timeout_ms <= %d", GS_TIMEOUT_MAX_MS) ||
        !bench_expect(b, rw >= 0 && rw <= GS_MAX_WORKERS, "need 0 <= rtt_workers <= %d", GS_MAX_WORKERS))
        return;
    int timeout_ms = tmo == 0 ? GS_INFINITY : (int)tmo;

    gs_pid latch;
    gs_pid *callers = calloc((size_t)k, sizeof *callers), *callees = calloc((size_t)k, sizeof *callees);
    sc_record *recs = calloc((size_t)k, sizeof *recs);
    if (!bench_expect(b, callers && callees && recs, "out of memory") ||
        !bench_ok(b, bench_latch_start(b, &latch), "gs_start latch"))
        goto out;
    int64_t started = 0;
    for (; started < k; started++) {
        if (!bench_ok(b, gs_start(b->rt, &callee_ops, NULL, &callees[started]), "gs_start callee"))
            break;
        sc_arg a = {callees[started], latch, &recs[started], timeout_ms};
        if (!bench_ok(b, gs_start(b->rt, &caller_ops, &a, &callers[started]), "gs_start caller"))
            break;
    }
    if (started < k)
        goto out;

    gs_runtime_stats st0, st1;
    gs_runtime_stats_get(b->rt, &st0);
    int64_t arrived = 0, ok = 0;
    int64_t calls_ns = pairs_run(b, latch, callers, k, m, SC_GO_CALLS, &arrived, &ok);
    gs_runtime_stats_get(b->rt, &st1);
    int64_t casts_ns = calls_ns < 0 ? -1 : pairs_run(b, latch, callers, k, m, SC_GO_CASTS, &arrived, &ok);
    int64_t wrong = 0, first = 0;
    for (int64_t i = 0; i < k; i++) {
        int64_t c = callee_count(b->rt, callees[i]);
        if (c != 2 * m && wrong++ == 0)
            first = c;
    }
    bench_expect(b, wrong == 0, "%lld callees counted wrong (e.g. %lld, want %lld)", (long long)wrong, (long long)first,
                 (long long)(2 * m));

    bench_rate(b, k * m, calls_ns > 0 ? calls_ns : 0);
    bench_set_int(b, "pairs", k);
    bench_set_int(b, "calls_per_pair", m);
    bench_set_int(b, "timeout_ms", tmo);
    double call_ns = calls_ns > 0 ? (double)calls_ns / (double)(k * m) : 0;
    double rt_ns = casts_ns > 0 ? (double)casts_ns / (double)(k * m) : 0;
    bench_set_num(b, "cast_rtt_per_sec", rt_ns > 0 ? 1e9 / rt_ns : 0);
    bench_set_num(b, "suspension_cost", rt_ns > 0 ? call_ns / rt_ns : 0);
    bench_set_int(b, "calls_suspended", (int64_t)(st1.calls_suspended - st0.calls_suspended));
    bench_set_int(b, "calls_blocked", (int64_t)(st1.calls_blocked - st0.calls_blocked));
    bench_expect(b, st1.calls_blocked == st0.calls_blocked, "pairs: %llu calls held their worker",
                 (unsigned long long)(st1.calls_blocked - st0.calls_blocked));

    if (!bench_failed(b))
        hot_pair(b, n, warmup, timeout_ms);
out:
    free(callers);
    free(callees);
    free(recs);
}
