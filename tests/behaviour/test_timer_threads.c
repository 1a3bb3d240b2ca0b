/* Timers armed from threads outside the worker pool, which take their
 * records through caches of their own (src/runtime/thread_cache.c):
 * the records go back when a thread exits or moves to another runtime,
 * and a cache outlives the runtime it was bound to without harm. */
#include "common.h"

uint32_t timers_records_made(gs_runtime *rt); /* src/runtime/timers.c */

static int ignore_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    return GS_OK;
}

static const gs_server_ops sink_ops = {.name = "sink", .handle_info = ignore_info};

typedef struct arm_job {
    gs_runtime *rt;
    gs_pid to;
    int timers;
    int failures; /* read by the test thread after join */
} arm_job;

/* Arms far timers and cancels each at once. */
static void *arm_and_cancel(void *arg)
{
    arm_job *j = arg;
    for (int i = 0; i < j->timers; i++) {
        gs_timer t;
        if (gs_send_after(j->rt, j->to, 1, &i, sizeof i, 60000, &t) != GS_OK ||
            gs_cancel_timer(j->rt, t) != GS_OK)
            j->failures++;
    }
    return NULL;
}

#define WAVES 400
#define PER_WAVE 4
#define TIMERS_PER_THREAD 100

Test(timer_threads, exiting_threads_hand_their_records_back, .timeout = 120)
{
    gs_runtime *rt = rt_new(2);
    gs_pid sink = start_ok(rt, &sink_ops, NULL);
    int failures = 0;
    for (int w = 0; w < WAVES; w++) {
        pthread_t th[PER_WAVE];
        arm_job jobs[PER_WAVE];
        for (int i = 0; i < PER_WAVE; i++) {
            jobs[i] = (arm_job){rt, sink, TIMERS_PER_THREAD, 0};
            cr_assert_eq(pthread_create(&th[i], NULL, arm_and_cancel, &jobs[i]), 0);
        }
        for (int i = 0; i < PER_WAVE; i++) {
            pthread_join(th[i], NULL);
            failures += jobs[i].failures;
        }
    }
    cr_assert_eq(failures, 0);
    /* 160,000 timers from 1,600 threads: records are reused. A thread
     * that kept its cached records at exit would strand up to 64 each
     * (tens of thousands in all). */
    uint32_t made = timers_records_made(rt);
    cr_assert_lt(made, 5000u, "%u timer records made for %d concurrent threads", made, PER_WAVE);
    cr_assert_eq(gs_runtime_stop(rt), GS_OK);
}

Test(timer_threads, a_cache_outlives_its_runtime, .timeout = 60)
{
    /* This thread binds its cache to a runtime, which stops; the next
     * runtime (perhaps at the same address) must not be taken for it,
     * and its records must not be handed to a pool that is gone (ASan
     * would see either). */
    for (int round = 0; round < 20; round++) {
        gs_runtime *rt = rt_new(1);
        gs_pid sink = start_ok(rt, &sink_ops, NULL);
        arm_job j = {rt, sink, 50 + round, 0};
        arm_and_cancel(&j);
        cr_assert_eq(j.failures, 0);
        cr_assert_eq(gs_runtime_stop(rt), GS_OK);
    }
}

Test(timer_threads, one_thread_alternating_between_runtimes, .timeout = 60)
{
    gs_runtime *a = rt_new(1), *b = rt_new(1);
    gs_pid sa = start_ok(a, &sink_ops, NULL), sb = start_ok(b, &sink_ops, NULL);
    for (int i = 0; i < 2000; i++) {
        arm_job j = {i % 2 ? a : b, i % 2 ? sa : sb, 3, 0};
        arm_and_cancel(&j);
        cr_assert_eq(j.failures, 0);
    }
    /* Each switch hands the cache back: neither runtime runs out. */
    cr_assert_lt(timers_records_made(a), 2000u);
    cr_assert_lt(timers_records_made(b), 2000u);
    cr_assert_eq(gs_runtime_stop(a), GS_OK);
    /* A thread that still holds a cache of b exits after a stopped. */
    arm_job j = {b, sb, 10, 0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, arm_and_cancel, &j), 0);
    pthread_join(th, NULL);
    cr_assert_eq(j.failures, 0);
    cr_assert_eq(gs_runtime_stop(b), GS_OK);
}
