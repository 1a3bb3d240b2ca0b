/* w7c_timer_holders.c - W7c (not in WORKLOADS.md): what quiet threads
 * that hold timers cost the timer thread. `holders` outside threads each
 * arm one far timer (60 s: it waits in the thread's outbox, see
 * src/runtime/timer_outbox.c) and then block; a 1 ms interval timer keeps
 * the timer thread busy meanwhile. Reports the process's CPU over
 * window_ms as a share of one CPU (the holders use none: it is the timer
 * thread's, plus the ticks' handling). Check: every timer armed, the
 * interval timer ticked and cancels. ops = ticks handled in the window.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

enum { TICK = 1, HELD = 2, COUNT = 3 };

static int holders_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    (void)ctx;
    if (m->tag == TICK)
        (*(int64_t *)state)++;
    return GS_OK;
}

static int holders_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    (void)m;
    return gs_reply(gs_ctx_runtime(ctx), from, state, sizeof(int64_t));
}

static const gs_server_ops holders_ops = {.name = "w7c_sink",
                                          .state_size = sizeof(int64_t),
                                          .handle_info = holders_info,
                                          .handle_call = holders_call};

typedef struct holder {
    gs_runtime *rt;
    gs_pid sink;
    int rc;
    pthread_barrier_t *armed, *release;
} holder;

static void *hold_one(void *arg)
{
    holder *h = arg;
    int v = 0;
    h->rc = gs_send_after(h->rt, h->sink, HELD, &v, sizeof v, 60000, NULL);
    pthread_barrier_wait(h->armed);
    pthread_barrier_wait(h->release);
    return NULL;
}

static int64_t ticks_now(bench *b, gs_pid sink)
{
    int64_t n = -1;
    bench_ok(b, gs_call(b->rt, sink, COUNT, NULL, 0, &n, sizeof n, NULL, 5000), "count ticks");
    return n;
}

void w7c_timer_holders(bench *b)
{
    int64_t nh = bench_param(b, "holders");
    int64_t window_ms = bench_param(b, "window_ms");
    if (!bench_expect(b, nh >= 0 && nh <= 100000, "need 0 <= holders <= 100000") ||
        !bench_expect(b, window_ms >= 10 && window_ms <= 60000, "need 10 <= window_ms <= 60000"))
        return;
    bench_set_int(b, "holders", nh);
    gs_pid sink;
    if (!bench_ok(b, gs_start(b->rt, &holders_ops, NULL, &sink), "gs_start"))
        return;
    holder *hs = calloc((size_t)nh + 1, sizeof *hs);
    pthread_t *th = calloc((size_t)nh + 1, sizeof *th);
    pthread_barrier_t armed, release;
    pthread_barrier_init(&armed, NULL, (unsigned)nh + 1);
    pthread_barrier_init(&release, NULL, (unsigned)nh + 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int64_t started = 0;
    for (int64_t i = 0; hs != NULL && th != NULL && i < nh; i++, started++) {
        hs[i] = (holder){b->rt, sink, GS_OK, &armed, &release};
        if (pthread_create(&th[i], &attr, hold_one, &hs[i]) != 0)
            break;
    }
    if (!bench_expect(b, hs != NULL && th != NULL && started == nh, "started %lld of %lld holders",
                      (long long)started, (long long)nh)) {
        /* The barriers count every holder: those started wait forever. */
        bench_print(b, stdout);
        exit(1);
    }
    pthread_barrier_wait(&armed);
    int64_t failed = 0;
    for (int64_t i = 0; i < nh; i++)
        failed += hs[i].rc != GS_OK;
    bench_expect(b, failed == 0, "%lld holders could not arm", (long long)failed);
    int v = 0;
    gs_timer tick;
    if (bench_ok(b, gs_send_interval(b->rt, sink, TICK, &v, sizeof v, 1, &tick), "gs_send_interval")) {
        bench_sleep_ms(200); /* settle */
        int64_t t0 = ticks_now(b, sink), w0 = bench_now_ns(), c0 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        bench_sleep_ms((int)window_ms);
        int64_t c1 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID), w1 = bench_now_ns(), t1 = ticks_now(b, sink);
        bench_rate(b, t1 - t0, w1 - w0);
        bench_set_num(b, "process_cpu_pct", 100.0 * (double)(c1 - c0) / (double)(w1 - w0));
        bench_expect(b, t1 > t0, "the interval timer did not tick");
        bench_ok(b, gs_cancel_timer(b->rt, tick), "cancel the interval timer");
    }
    pthread_barrier_wait(&release);
    for (int64_t i = 0; i < nh; i++)
        pthread_join(th[i], NULL);
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&armed);
    pthread_barrier_destroy(&release);
    free(hs);
    free(th);
}
