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

/* A thread that arms a few far timers and then goes quiet keeps them in
 * its outbox (timer_outbox.c): fewer than a flush's worth, and the timer
 * thread, kept busy by a 1 ms interval timer, never sleeps past them. It
 * must take them in on its own when they come due (the held-deadline
 * hint), while their thread is still alive and silent. */
#define QUIET_TIMERS 10
static atomic_int quiet_got;
static atomic_int quiet_early;
static int quiet_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    int64_t due;
    if (m->tag == 2 && m->len == sizeof due) {
        memcpy(&due, m->data, sizeof due);
        if (now_ns() < due)
            atomic_fetch_add(&quiet_early, 1);
        atomic_fetch_add(&quiet_got, 1);
    }
    return GS_OK;
}

static const gs_server_ops quiet_sink_ops = {.name = "quiet-sink", .handle_info = quiet_info};

typedef struct quiet_job {
    gs_runtime *rt;
    gs_pid to;
    int failures;
    pthread_barrier_t *armed, *release;
} quiet_job;

static void *arm_then_stay_quiet(void *arg)
{
    quiet_job *j = arg;
    for (int i = 0; i < QUIET_TIMERS; i++) {
        int ms = 20 + 20 * i;
        int64_t due = now_ns() + (int64_t)ms * 1000000;
        if (gs_send_after(j->rt, j->to, 2, &due, sizeof due, ms, NULL) != GS_OK)
            j->failures++;
    }
    pthread_barrier_wait(j->armed);
    pthread_barrier_wait(j->release); /* alive and silent until the test is done */
    return NULL;
}

Test(timer_threads, a_quiet_threads_held_timers_fire_in_time, .timeout = 30)
{
    atomic_store(&quiet_got, 0);
    atomic_store(&quiet_early, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid sink = start_ok(rt, &quiet_sink_ops, NULL);
    int one = 1;
    gs_timer busy;
    cr_assert_eq(gs_send_interval(rt, sink, 1, &one, sizeof one, 1, &busy), GS_OK);
    sleep_ms(5);
    pthread_barrier_t armed, release;
    pthread_barrier_init(&armed, NULL, 2);
    pthread_barrier_init(&release, NULL, 2);
    quiet_job j = {rt, sink, 0, &armed, &release};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, arm_then_stay_quiet, &j), 0);
    pthread_barrier_wait(&armed);
    bool all = wait_int_eq(&quiet_got, QUIET_TIMERS, 5000);
    int got = atomic_load(&quiet_got);
    pthread_barrier_wait(&release);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&armed);
    pthread_barrier_destroy(&release);
    cr_assert_eq(j.failures, 0);
    cr_assert(all, "%d of %d held timers fired while their thread was quiet", got, QUIET_TIMERS);
    cr_assert_eq(atomic_load(&quiet_early), 0, "a held timer fired early");
    cr_assert_eq(gs_cancel_timer(rt, busy), GS_OK);
    rt_free(rt);
}

/* ---- threads exiting while the runtime stops ---- */

#define EXIT_RACE_ROUNDS 1500
#define EXIT_RACE_THREADS 6

static pthread_barrier_t exit_race_armed;

typedef struct exit_race_job {
    gs_runtime *rt;
    gs_pid to;
    int delay_us; /* how long after the stop began it exits */
    int failures;
} exit_race_job;

static void spin_us(int us)
{
    int64_t until = now_ns() + (int64_t)us * 1000;
    while (now_ns() < until)
        ;
}

/* Arms timers that wait in this thread's outbox (due >= 4 ms ahead, fewer
 * than it sends on at once), with payloads too big to sit in the record
 * (so a timer never freed is a leak LeakSanitizer reports), then exits
 * somewhere during gs_runtime_stop. */
static void *arm_then_exit(void *arg)
{
    exit_race_job *j = arg;
    char big[100];
    memset(big, 7, sizeof big);
    for (int i = 0; i < 20; i++)
        j->failures += gs_send_after(j->rt, j->to, 1, big, sizeof big, 1000 + i, NULL) != GS_OK;
    j->failures += gs_send_after_name(j->rt, "nobody", 1, big, sizeof big, 2000, NULL) != GS_OK;
    pthread_barrier_wait(&exit_race_armed);
    spin_us(j->delay_us);
    return NULL;
}

/* A thread's exit hands its held timers on (thread_cache.c); one that did
 * so after the stop had drained the inbox left them there for good. The
 * exits are spread over the stop, so a round only sometimes hits that
 * moment: a regression shows as a LeakSanitizer report in some runs of
 * this test, not all (before the fix, in 3 of 5 runs). */
Test(timer_threads, threads_exiting_during_the_stop_leave_no_timer_behind, .timeout = 120)
{
    int failures = 0;
    for (int round = 0; round < EXIT_RACE_ROUNDS; round++) {
        gs_runtime *rt = rt_new(1);
        gs_pid sink = start_ok(rt, &sink_ops, NULL);
        cr_assert_eq(pthread_barrier_init(&exit_race_armed, NULL, EXIT_RACE_THREADS + 1), 0);
        pthread_t th[EXIT_RACE_THREADS];
        exit_race_job jobs[EXIT_RACE_THREADS];
        for (int i = 0; i < EXIT_RACE_THREADS; i++) {
            jobs[i] = (exit_race_job){rt, sink, i * (round % 7) * 20, 0};
            cr_assert_eq(pthread_create(&th[i], NULL, arm_then_exit, &jobs[i]), 0);
        }
        pthread_barrier_wait(&exit_race_armed);
        cr_assert_eq(gs_runtime_stop(rt), GS_OK);
        for (int i = 0; i < EXIT_RACE_THREADS; i++) {
            pthread_join(th[i], NULL);
            failures += jobs[i].failures;
        }
        pthread_barrier_destroy(&exit_race_armed);
    }
    cr_assert_eq(failures, 0, "%d timers not armed", failures);
}
