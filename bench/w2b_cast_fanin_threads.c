/* w2b_cast_fanin_threads.c - W2b: as W2 (cast_fanin), but the p producers
 * are plain pthreads outside the runtime, each casting m `incr` in a
 * tight loop. Timed from releasing the threads (created beforehand and
 * waiting at a gate) to the reply of `get` once all have been joined.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "bench.h"

extern const gs_server_ops w2_counter_ops;
int64_t w2_get(bench *b, gs_pid counter);
int w2_incr(gs_runtime *rt, gs_pid counter);

typedef struct producer {
    pthread_t th;
    gs_runtime *rt;
    gs_pid counter;
    int64_t m;
    int64_t errors;
    atomic_int *gate;
} producer;

static void *producer_main(void *arg)
{
    producer *pr = arg;
    while (atomic_load_explicit(pr->gate, memory_order_acquire) == 0)
        sched_yield();
    for (int64_t i = 0; i < pr->m; i++)
        if (w2_incr(pr->rt, pr->counter) != GS_OK)
            pr->errors++;
    return NULL;
}

void w2b_cast_fanin_threads(bench *b)
{
    int64_t p = bench_param(b, "p"), m = bench_param(b, "m");
    if (!bench_expect(b, p > 0 && p <= 4096, "need 0 < p <= 4096"))
        return;
    gs_pid counter;
    if (!bench_ok(b, gs_start(b->rt, &w2_counter_ops, NULL, &counter), "gs_start counter"))
        return;
    producer *prs = calloc((size_t)p, sizeof *prs);
    if (!bench_expect(b, prs != NULL, "out of memory"))
        return;
    atomic_int gate = 0;
    int64_t started = 0;
    for (; started < p; started++) {
        prs[started] = (producer){.rt = b->rt, .counter = counter, .m = m, .gate = &gate};
        if (pthread_create(&prs[started].th, NULL, producer_main, &prs[started]) != 0)
            break;
    }
    bench_expect(b, started == p, "only %lld of %lld threads started", (long long)started, (long long)p);

    int64_t start = bench_now_ns();
    atomic_store_explicit(&gate, 1, memory_order_release);
    int64_t errors = 0;
    for (int64_t i = 0; i < started; i++) {
        pthread_join(prs[i].th, NULL);
        errors += prs[i].errors;
    }
    int64_t got = w2_get(b, counter);
    int64_t elapsed = bench_now_ns() - start;

    bench_rate(b, p * m, elapsed);
    bench_set_int(b, "producers", p);
    bench_set_str(b, "producers_are", "pthreads");
    bench_set_int(b, "count", got);
    bench_expect(b, errors == 0, "%lld casts failed", (long long)errors);
    bench_expect(b, got == p * m, "get replied %lld, want %lld", (long long)got, (long long)(p * m));
    free(prs);
}
