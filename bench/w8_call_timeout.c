/* w8_call_timeout.c - W8: many callers, one slow server.
 *
 * The server answers a `slow` call only after 50 ms without blocking its
 * worker: handle_call keeps the caller's gs_from, arms gs_send_after to
 * itself for 50 ms and returns GS_NOREPLY; handle_info then gs_reply's.
 * A `fast` call is answered at once with the caller's id.
 *
 * c callers, released together, each call `slow` with a 10 ms timeout,
 * then `fast` with a 1000 ms timeout. callers=servers (the default): each
 * caller is a server; the main thread casts `go` to every one, and its
 * handle_cast makes both calls (a gs_call from a callback suspends the
 * caller, not its worker: the timeout comes from the runtime's timer
 * wheel) and casts its results to a collector server, which answers the
 * main thread's deferred `wait` call once all c have reported. The times
 * are taken inside the callback, around the slow call. callers=threads:
 * each caller is a pthread outside the runtime (futex deadlines), the
 * variant from before in-server calls could suspend.
 *
 * Check: every slow call fails with GS_ETIMEDOUT after >= 10 ms and
 * before 50 ms; every fast call succeeds with its own id; the server's
 * late gs_reply of every slow call finds no caller (GS_ENOENT: a reply
 * that reached somebody would be a stray); no caller's slow-call buffer is
 * ever written, even after its thread (or callback) has gone on; with
 * server callers, no call held its worker (gs_runtime_stats calls_blocked
 * does not grow). Lateness is the time of the timeout error minus the
 * call's deadline. ops = 2 * c.
 */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

enum { W8_SLOW = 1, W8_FAST, W8_LATER, W8_COUNT, W8_GO, W8_RESULT, W8_WAIT, W8_HOLD, W8_WARM };
#define SLOW_DELAY_MS 50
#define SLOW_TIMEOUT_MS 10
#define FAST_TIMEOUT_MS 1000
#define SENTINEL 0x5E5E5E5E5E5E5E5Ell

typedef struct answer {
    int64_t fast, id;
} answer;

typedef struct later {
    gs_from from;
    int64_t id;
} later;

typedef struct slow_state {
    int64_t answered, strays, timer_errors;
    gs_from *held; /* `hold` calls (the warm-up), answered all at once */
    int64_t nheld;
} slow_state;

static void slow_terminate(gs_ctx *ctx, void *state, int reason)
{
    free(((slow_state *)state)->held);
}

static int slow_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    slow_state *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    int64_t id = m->len == sizeof(int64_t) ? *(const int64_t *)m->data : -1;
    if (m->tag == W8_SLOW) {
        later l = {from, id};
        if (gs_send_after(rt, gs_self(ctx), W8_LATER, &l, sizeof l, SLOW_DELAY_MS, NULL) != GS_OK) {
            s->timer_errors++;
            answer a = {0, id};
            gs_reply(rt, from, &a, sizeof a);
            return GS_OK;
        }
        return GS_NOREPLY;
    }
    if (m->tag == W8_HOLD) {
        /* id is the number of hold calls to gather before answering any */
        if (s->held == NULL && (s->held = calloc((size_t)(id > 0 ? id : 1), sizeof *s->held)) == NULL)
            return GS_ENOMEM;
        s->held[s->nheld++] = from;
        if (s->nheld >= id) {
            for (int64_t i = 0; i < s->nheld; i++)
                gs_reply(rt, s->held[i], NULL, 0);
            s->nheld = 0;
        }
        return GS_NOREPLY;
    }
    if (m->tag == W8_FAST) {
        answer a = {1, id};
        gs_reply(rt, from, &a, sizeof a);
        return GS_OK;
    }
    int64_t r[3] = {s->answered, s->strays, s->timer_errors};
    gs_reply(rt, from, r, sizeof r);
    return GS_OK;
}

static int slow_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    slow_state *s = state;
    if (m->tag != W8_LATER || m->len != sizeof(later))
        return GS_OK;
    later l;
    memcpy(&l, m->data, sizeof l);
    answer a = {0, l.id};
    int rc = gs_reply(gs_ctx_runtime(ctx), l.from, &a, sizeof a);
    s->answered++;
    if (rc != GS_ENOENT)
        s->strays++; /* GS_OK: a caller that had timed out got it */
    return GS_OK;
}

static const gs_server_ops slow_ops = {
    .name = "w8_slow",
    .state_size = sizeof(slow_state),
    .handle_call = slow_call,
    .handle_info = slow_info,
    .terminate = slow_terminate,
};

/* One caller's record, in an array the main thread reads at the end. */
typedef struct caller {
    pthread_t th;
    gs_runtime *rt;
    gs_pid srv;
    int64_t id;
    int slow_rc, fast_rc;
    int64_t t0;      /* when the slow call was made */
    int64_t slow_ns; /* from the slow call to its error */
    answer slow_buf; /* must stay SENTINEL: the late reply is dropped */
    answer fast_buf;
} caller;

/* ---- callers=servers -------------------------------------------------- */

/* What a caller server reports to the collector. */
typedef struct result {
    int64_t id, t0, slow_ns;
    int slow_rc, fast_rc;
    answer fast;
} result;

typedef struct collector_state {
    caller *cs;
    int64_t n, got, bad_ids, target;
    bool waiting;
    gs_from waiter;
} collector_state;

typedef struct collector_arg {
    caller *cs;
    int64_t n;
} collector_arg;

static int collector_init(gs_ctx *ctx, void *state, const void *arg)
{
    collector_state *s = state;
    const collector_arg *a = arg;
    s->cs = a->cs;
    s->n = a->n;
    return GS_OK;
}

static void collector_answer(gs_ctx *ctx, collector_state *s)
{
    if (s->waiting && s->got >= s->target) {
        s->waiting = false;
        int64_t r[2] = {s->got, s->bad_ids};
        gs_reply(gs_ctx_runtime(ctx), s->waiter, r, sizeof r);
    }
}

static int collector_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    collector_state *s = state;
    if (m->tag != W8_RESULT || m->len != sizeof(result))
        return GS_OK;
    result r;
    memcpy(&r, m->data, sizeof r);
    if (r.id < 0 || r.id >= s->n || s->cs[r.id].fast_rc != 1) {
        s->bad_ids++; /* unknown id, or a second report */
    } else {
        caller *c = &s->cs[r.id];
        c->slow_rc = r.slow_rc;
        c->t0 = r.t0;
        c->slow_ns = r.slow_ns;
        c->fast_rc = r.fast_rc;
        c->fast_buf = r.fast;
    }
    s->got++;
    collector_answer(ctx, s);
    return GS_OK;
}

static int collector_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    collector_state *s = state;
    if (m->tag != W8_WAIT || m->len != sizeof(int64_t)) {
        gs_reply(gs_ctx_runtime(ctx), from, NULL, 0);
        return GS_OK;
    }
    s->target = *(const int64_t *)m->data;
    s->waiter = from;
    s->waiting = true;
    collector_answer(ctx, s);
    return GS_NOREPLY;
}

static const gs_server_ops collector_ops = {
    .name = "w8_collector",
    .state_size = sizeof(collector_state),
    .init = collector_init,
    .handle_cast = collector_cast,
    .handle_call = collector_call,
};

typedef struct caller_srv_state {
    caller *c;
    gs_pid collector, latch;
} caller_srv_state;

typedef struct caller_srv_arg {
    caller *c;
    gs_pid collector, latch;
} caller_srv_arg;

static int caller_srv_init(gs_ctx *ctx, void *state, const void *arg)
{
    caller_srv_state *s = state;
    const caller_srv_arg *a = arg;
    s->c = a->c;
    s->collector = a->collector;
    s->latch = a->latch;
    return GS_OK;
}

static int caller_srv_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    caller_srv_state *s = state;
    caller *c = s->c;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (m->tag == W8_WARM && m->len == sizeof(int64_t)) {
        /* suspended in a `hold` until all callers are: every one holds a
         * fiber stack at the same time, so the pool has them all */
        int rc = gs_call(rt, c->srv, W8_HOLD, m->data, m->len, NULL, 0, NULL, 10000);
        return bench_latch_arrive(rt, s->latch, rc == GS_OK) == GS_OK ? GS_OK : GS_ENOMEM;
    }
    if (m->tag != W8_GO)
        return GS_OK;
    result r = {.id = c->id};
    /* the slow call's reply buffer is the caller record's, which outlives
     * this callback: a late reply written anywhere would be seen there */
    int64_t t0 = r.t0 = bench_now_ns();
    r.slow_rc = gs_call(rt, c->srv, W8_SLOW, &c->id, sizeof c->id, &c->slow_buf, sizeof c->slow_buf, NULL,
                        SLOW_TIMEOUT_MS);
    r.slow_ns = bench_now_ns() - t0;
    r.fast_rc = gs_call(rt, c->srv, W8_FAST, &c->id, sizeof c->id, &r.fast, sizeof r.fast, NULL, FAST_TIMEOUT_MS);
    return gs_cast(rt, s->collector, W8_RESULT, &r, sizeof r) == GS_OK ? GS_OK : GS_ENOMEM;
}

static const gs_server_ops caller_srv_ops = {
    .name = "w8_caller",
    .state_size = sizeof(caller_srv_state),
    .init = caller_srv_init,
    .handle_cast = caller_srv_cast,
};

/* Starts n caller servers and the collector, warms the fiber-stack pool
 * if asked (untimed), releases the callers, waits for every report.
 * Returns the number of callers that ran. */
static int64_t run_servers(bench *b, caller *cs, int64_t n, bool warm, gs_runtime_stats *st0,
                           gs_timer_lateness *fired0, int64_t *elapsed)
{
    gs_pid collector, latch;
    collector_arg ca = {cs, n};
    if (!bench_ok(b, gs_start(b->rt, &collector_ops, &ca, &collector), "gs_start collector") ||
        !bench_ok(b, bench_latch_start(b, &latch), "gs_start latch"))
        return 0;
    gs_pid *pids = calloc((size_t)n, sizeof *pids);
    if (!bench_expect(b, pids != NULL, "out of memory"))
        return 0;
    int64_t started = 0;
    for (; started < n; started++) {
        caller_srv_arg a = {&cs[started], collector, latch};
        cs[started].fast_rc = 1; /* "not reported yet", for the collector */
        if (!bench_ok(b, gs_start(b->rt, &caller_srv_ops, &a, &pids[started]), "gs_start caller"))
            break;
    }
    if (warm && started == n) {
        for (int64_t i = 0; i < n; i++)
            if (!bench_ok(b, gs_cast(b->rt, pids[i], W8_WARM, &n, sizeof n), "gs_cast warm"))
                return 0;
        bench_latch_result lr = {0, 0};
        bench_ok(b, bench_latch_wait(b->rt, latch, n, 20000, &lr), "warm-up");
        bench_expect(b, lr.sum == n, "warm-up: %lld of %lld hold calls answered", (long long)lr.sum, (long long)n);
    }
    gs_runtime_stats_get(b->rt, st0);
    gs_timer_lateness_get(b->rt, fired0);
    int64_t start = bench_now_ns();
    int64_t released = 0;
    for (; released < started; released++)
        if (!bench_ok(b, gs_cast(b->rt, pids[released], W8_GO, NULL, 0), "gs_cast go"))
            break;
    int64_t r[2] = {0, 0};
    int rc = gs_call(b->rt, collector, W8_WAIT, &released, sizeof released, r, sizeof r, NULL,
                     BENCH_COMPLETION_TIMEOUT_MS);
    *elapsed = bench_now_ns() - start;
    bench_ok(b, rc, "waiting for the callers' reports");
    bench_expect(b, r[1] == 0, "%lld reports with a bad or repeated id", (long long)r[1]);
    free(pids);
    return released;
}

/* ---- callers=threads -------------------------------------------------- */

/* One-shot gates on a futex: opening one wakes every waiter at once,
 * without the mutex a condition variable would make 1000 threads queue
 * on. `start` releases the callers; callers that are done wait at `leave`
 * until all are, so that no thread exits (and unmaps its stack, a TLB
 * shootdown on every core) while others are still timing their calls;
 * the last one to finish opens `all_done` for the main thread. */
static atomic_int start_gate, leave_gate, all_done;
static atomic_llong finished;
static long long n_callers;

static void gate_wait(atomic_int *g)
{
    while (atomic_load_explicit(g, memory_order_acquire) == 0)
        syscall(SYS_futex, g, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static void gate_open(atomic_int *g)
{
    atomic_store_explicit(g, 1, memory_order_release);
    syscall(SYS_futex, g, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void *caller_main(void *arg)
{
    caller *c = arg;
    gate_wait(&start_gate);
    int64_t t0 = c->t0 = bench_now_ns();
    c->slow_rc = gs_call(c->rt, c->srv, W8_SLOW, &c->id, sizeof c->id, &c->slow_buf, sizeof c->slow_buf, NULL,
                         SLOW_TIMEOUT_MS);
    c->slow_ns = bench_now_ns() - t0;
    c->fast_rc = gs_call(c->rt, c->srv, W8_FAST, &c->id, sizeof c->id, &c->fast_buf, sizeof c->fast_buf, NULL,
                         FAST_TIMEOUT_MS);
    if (atomic_fetch_add_explicit(&finished, 1, memory_order_acq_rel) + 1 == n_callers)
        gate_open(&all_done);
    gate_wait(&leave_gate);
    return NULL;
}

static int64_t run_threads(bench *b, caller *cs, int64_t n, int64_t *elapsed)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int64_t started = 0;
    for (; started < n; started++)
        if (pthread_create(&cs[started].th, &attr, caller_main, &cs[started]) != 0)
            break;
    pthread_attr_destroy(&attr);
    bench_expect(b, started == n, "only %lld of %lld caller threads started", (long long)started, (long long)n);

    n_callers = started;
    int64_t start = bench_now_ns();
    gate_open(&start_gate);
    if (started > 0)
        gate_wait(&all_done);
    *elapsed = bench_now_ns() - start;
    gate_open(&leave_gate);
    for (int64_t i = 0; i < started; i++)
        pthread_join(cs[i].th, NULL);
    return started;
}

void w8_call_timeout(bench *b)
{
    int64_t n = bench_param(b, "c");
    bool warm = bench_param(b, "warm") != 0;
    const char *how = bench_param_str(b, "callers", "servers");
    bool servers = strcmp(how, "servers") == 0;
    if (!bench_expect(b, servers || strcmp(how, "threads") == 0, "callers=%s: want servers or threads", how) ||
        !bench_expect(b, n > 0 && n <= 100000, "need 0 < c <= 100000"))
        return;
    gs_pid srv;
    if (!bench_ok(b, gs_start(b->rt, &slow_ops, NULL, &srv), "gs_start"))
        return;
    caller *cs = calloc((size_t)n, sizeof *cs);
    int64_t *late = calloc((size_t)n, sizeof *late);
    if (!bench_expect(b, cs && late, "out of memory"))
        goto out;
    for (int64_t i = 0; i < n; i++) {
        caller *c = &cs[i];
        c->rt = b->rt;
        c->srv = srv;
        c->id = i;
        c->slow_buf.fast = c->slow_buf.id = SENTINEL;
    }

    gs_runtime_stats st0, st1;
    gs_runtime_stats_get(b->rt, &st0); /* run_servers takes it again after its warm-up */
    /* The timer thread's lateness over the run: with server callers, the
     * call timeouts (on the wheel) and nothing else, since the server's
     * 50 ms timers come due well after the last report (in a run slower
     * than that, some of them would count too). Outside callers' timeouts
     * are futex deadlines: the wheel fires none. Static: 1.5 KiB each. */
    static gs_timer_lateness fired0, fired1;
    gs_timer_lateness_get(b->rt, &fired0);
    int64_t elapsed = 0;
    int64_t ran = servers ? run_servers(b, cs, n, warm, &st0, &fired0, &elapsed) : run_threads(b, cs, n, &elapsed);
    gs_runtime_stats_get(b->rt, &st1);
    gs_timer_lateness_get(b->rt, &fired1);

    /* the server must really have answered every slow call, late */
    int64_t r[3] = {0, 0, 0};
    for (int64_t t0 = bench_now_ns(); bench_now_ns() - t0 < 5000000000ll; bench_sleep_ms(5)) {
        if (gs_call(b->rt, srv, W8_COUNT, NULL, 0, r, sizeof r, NULL, 1000) == GS_OK && r[0] >= ran)
            break;
    }
    bench_sleep_ms(10); /* any write into a caller's slow buffer would have happened by now */

    int64_t timed_out = 0, in_window = 0, fast_ok = 0, written = 0, nlate = 0;
    int64_t first_t0 = INT64_MAX, last_t0 = INT64_MIN, last_end = INT64_MIN;
    int other_rc = GS_OK;
    for (int64_t i = 0; i < ran; i++) {
        caller *c = &cs[i];
        first_t0 = c->t0 < first_t0 ? c->t0 : first_t0;
        last_t0 = c->t0 > last_t0 ? c->t0 : last_t0;
        last_end = c->t0 + c->slow_ns > last_end ? c->t0 + c->slow_ns : last_end;
        if (c->slow_rc == GS_ETIMEDOUT) {
            timed_out++;
            late[nlate++] = c->slow_ns - SLOW_TIMEOUT_MS * 1000000ll;
            if (c->slow_ns >= SLOW_TIMEOUT_MS * 1000000ll && c->slow_ns < SLOW_DELAY_MS * 1000000ll)
                in_window++;
        } else if (other_rc == GS_OK) {
            other_rc = c->slow_rc;
        }
        if (c->fast_rc == GS_OK && c->fast_buf.fast == 1 && c->fast_buf.id == c->id)
            fast_ok++;
        if (c->slow_buf.fast != SENTINEL || c->slow_buf.id != SENTINEL)
            written++;
    }
    bench_rate(b, 2 * n, elapsed);
    bench_set_int(b, "callers", n);
    bench_set_str(b, "callers_are", servers ? "servers" : "threads");
    bench_set_int(b, "warm", servers && warm);
    bench_latencies(b, late, (size_t)nlate);
    bench_set_int(b, "min_ns", nlate ? late[0] : 0); /* sorted now; negative: early */
    bench_set_fire_lateness(b, "fire", &fired0, &fired1);
    /* how spread out the slow calls were, and when the last one ended,
     * from the first one's start: the lateness is partly queueing when
     * the deadlines fall close together */
    bench_set_int(b, "start_spread_ns", ran ? last_t0 - first_t0 : 0);
    bench_set_int(b, "last_timeout_ns", ran ? last_end - first_t0 : 0);
    bench_set_int(b, "late_replies", r[0]);
    bench_set_int(b, "stray_replies", r[1]);
    bench_set_int(b, "calls_suspended", (int64_t)(st1.calls_suspended - st0.calls_suspended));
    bench_set_int(b, "calls_blocked", (int64_t)(st1.calls_blocked - st0.calls_blocked));
    bench_expect(b, timed_out == n, "%lld slow calls timed out, want %lld (another result: %s)", (long long)timed_out,
                 (long long)n, gs_strerror(other_rc));
    bench_expect(b, in_window == timed_out, "%lld timeouts outside [10 ms, 50 ms)", (long long)(timed_out - in_window));
    bench_expect(b, fast_ok == n, "%lld fast calls answered correctly, want %lld", (long long)fast_ok, (long long)n);
    bench_expect(b, r[0] == n, "server answered %lld slow calls late, want %lld", (long long)r[0], (long long)n);
    bench_expect(b, r[1] == 0, "%lld late replies reached a caller", (long long)r[1]);
    bench_expect(b, r[2] == 0, "%lld gs_send_after failed in the server", (long long)r[2]);
    bench_expect(b, written == 0, "%lld slow-call buffers were written after the timeout", (long long)written);
    if (servers)
        bench_expect(b, st1.calls_blocked == st0.calls_blocked, "%llu calls held their worker (no fiber stack)",
                     (unsigned long long)(st1.calls_blocked - st0.calls_blocked));
out:
    free(cs);
    free(late);
}
