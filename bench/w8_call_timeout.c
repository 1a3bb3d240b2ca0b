/* w8_call_timeout.c - W8: many callers, one slow server.
 *
 * The server answers a `slow` call only after 50 ms without blocking its
 * worker: handle_call keeps the caller's gs_from, arms gs_send_after to
 * itself for 50 ms and returns GS_NOREPLY; handle_info then gs_reply's.
 * A `fast` call is answered at once with the caller's id.
 *
 * c callers, each a pthread outside the runtime (a gs_call made inside a
 * callback holds its worker until the reply, so c = 1000 server callers
 * would need 1000 workers): released together, each calls `slow` with a
 * 10 ms timeout, then `fast` with a 1000 ms timeout.
 *
 * Check: every slow call fails with GS_ETIMEDOUT after >= 10 ms and
 * before 50 ms; every fast call succeeds with its own id; the server's
 * late gs_reply of every slow call finds no caller (GS_ENOENT: a reply
 * that reached somebody would be a stray); no caller's slow-call buffer is
 * ever written, even after its thread has gone on. Lateness is the time of
 * the timeout error minus the call's deadline. ops = 2 * c.
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

enum { W8_SLOW = 1, W8_FAST, W8_LATER, W8_COUNT };
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
} slow_state;

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
};

typedef struct caller {
    pthread_t th;
    gs_runtime *rt;
    gs_pid srv;
    int64_t id;
    int slow_rc, fast_rc;
    int64_t slow_ns; /* from the slow call to its error */
    answer slow_buf; /* must stay SENTINEL: the late reply is dropped */
    answer fast_buf;
} caller;

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
    int64_t t0 = bench_now_ns();
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

void w8_call_timeout(bench *b)
{
    int64_t n = bench_param(b, "c");
    if (!bench_expect(b, n > 0 && n <= 100000, "need 0 < c <= 100000"))
        return;
    gs_pid srv;
    if (!bench_ok(b, gs_start(b->rt, &slow_ops, NULL, &srv), "gs_start"))
        return;
    caller *cs = calloc((size_t)n, sizeof *cs);
    int64_t *late = calloc((size_t)n, sizeof *late);
    if (!bench_expect(b, cs && late, "out of memory"))
        goto out;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int64_t started = 0;
    for (; started < n; started++) {
        caller *c = &cs[started];
        c->rt = b->rt;
        c->srv = srv;
        c->id = started;
        c->slow_buf.fast = c->slow_buf.id = SENTINEL;
        if (pthread_create(&c->th, &attr, caller_main, c) != 0)
            break;
    }
    pthread_attr_destroy(&attr);
    bench_expect(b, started == n, "only %lld of %lld caller threads started", (long long)started, (long long)n);

    n_callers = started;
    int64_t start = bench_now_ns();
    gate_open(&start_gate);
    if (started > 0)
        gate_wait(&all_done);
    int64_t elapsed = bench_now_ns() - start;
    gate_open(&leave_gate);
    for (int64_t i = 0; i < started; i++)
        pthread_join(cs[i].th, NULL);

    /* the server must really have answered every slow call, late */
    int64_t r[3] = {0, 0, 0};
    for (int64_t t0 = bench_now_ns(); bench_now_ns() - t0 < 5000000000ll; bench_sleep_ms(5)) {
        if (gs_call(b->rt, srv, W8_COUNT, NULL, 0, r, sizeof r, NULL, 1000) == GS_OK && r[0] >= started)
            break;
    }
    bench_sleep_ms(10); /* any write into a caller's slow buffer would have happened by now */

    int64_t timed_out = 0, in_window = 0, fast_ok = 0, written = 0, nlate = 0;
    int other_rc = GS_OK;
    for (int64_t i = 0; i < started; i++) {
        caller *c = &cs[i];
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
    bench_set_str(b, "callers_are", "threads");
    bench_latencies(b, late, (size_t)nlate);
    bench_set_int(b, "min_ns", nlate ? late[0] : 0); /* sorted now; negative: early */
    bench_set_int(b, "late_replies", r[0]);
    bench_set_int(b, "stray_replies", r[1]);
    bench_expect(b, timed_out == n, "%lld slow calls timed out, want %lld (another result: %s)", (long long)timed_out,
                 (long long)n, gs_strerror(other_rc));
    bench_expect(b, in_window == timed_out, "%lld timeouts outside [10 ms, 50 ms)", (long long)(timed_out - in_window));
    bench_expect(b, fast_ok == n, "%lld fast calls answered correctly, want %lld", (long long)fast_ok, (long long)n);
    bench_expect(b, r[0] == n, "server answered %lld slow calls late, want %lld", (long long)r[0], (long long)n);
    bench_expect(b, r[1] == 0, "%lld late replies reached a caller", (long long)r[1]);
    bench_expect(b, r[2] == 0, "%lld gs_send_after failed in the server", (long long)r[2]);
    bench_expect(b, written == 0, "%lld slow-call buffers were written after the timeout", (long long)written);
out:
    free(cs);
    free(late);
}
