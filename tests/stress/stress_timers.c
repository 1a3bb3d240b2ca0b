/* stress_timers: threads arm and cancel timers aimed at a few servers while
 * the servers are stopped and restarted. Exact accounting: every timer is
 * either delivered exactly once (and its cancel, if any, said GS_ENOENT)
 * or cancelled with GS_OK / dropped with its dead server (never
 * delivered); nothing reaches a later server in the same slot. Timers of
 * HOLD_AHEAD_NS or more wait in their thread's outbox (timer_outbox.c):
 * some are cancelled by another thread while there, and a phase has
 * short-lived threads that exit with timers held. A last phase keeps the
 * arming threads alive across runtime stops and starts: their record
 * caches (thread_cache.c) are detached by each stop and bound again to
 * the next runtime. Every timer about to be cancelled is read first
 * (gs_read_timer) while it may fire or its record be reused elsewhere. */
#define _GNU_SOURCE
#include <genserver.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stress_common.h"

#define THREADS 3
#define PER_THREAD 20000
#define SERVERS 4
#define TOTAL (THREADS * PER_THREAD)

typedef struct payload {
    uint32_t id;
    gs_pid target;
} payload;

static gs_runtime *rt;
static _Atomic gs_pid servers[SERVERS];
static atomic_uchar delivered[TOTAL];   /* times each timer arrived */
static atomic_uchar cancelled_ok[TOTAL]; /* its cancel returned GS_OK */
static atomic_int wrong_target;
static atomic_int stop_flag;

static int on_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    payload p;
    memcpy(&p, m->data, sizeof p);
    if (p.target != gs_self(ctx))
        atomic_fetch_add(&wrong_target, 1);
    atomic_fetch_add(&delivered[p.id], 1);
    return GS_OK;
}

static const gs_server_ops target_ops = {.name = "timer-target", .handle_info = on_info};

static int phase; /* 0: servers restarted meanwhile; 1: servers stay */

static void cancel_one(uint32_t id, gs_timer t)
{
    /* Read while it may fire, be cancelled elsewhere or its record be
     * reused: either its own time left (delays are under 41 ms) or gone. */
    int left = -1;
    int rc = gs_read_timer(rt, t, &left);
    CHECKF(rc == GS_ENOENT || (rc == GS_OK && left >= 0 && left <= 41), "read: %s, %d ms", gs_strerror(rc), left);
    rc = gs_cancel_timer(rt, t);
    CHECKF(rc == GS_OK || rc == GS_ENOENT, "cancel: %s", gs_strerror(rc));
    if (rc == GS_OK)
        atomic_store(&cancelled_ok[id], 1);
    CHECK(gs_cancel_timer(rt, t) == GS_ENOENT);
    CHECK(gs_read_timer(rt, t, &left) == GS_ENOENT);
}

/* A timer handed to another thread to cancel: one slot per arming
 * thread, taken by the next thread. */
typedef struct handoff {
    pthread_mutex_t lock;
    bool full;
    uint32_t id;
    gs_timer t;
} handoff;
static handoff handoffs[THREADS];

static void hand_over(unsigned from, uint32_t id, gs_timer t)
{
    handoff *mine = &handoffs[from], *theirs = &handoffs[(from + THREADS - 1) % THREADS];
    pthread_mutex_lock(&mine->lock);
    bool had = mine->full;
    uint32_t old_id = mine->id;
    gs_timer old_t = mine->t;
    mine->full = false;
    pthread_mutex_unlock(&mine->lock);
    if (had) /* our own earlier one nobody took: cancel it ourselves */
        cancel_one(old_id, old_t);
    pthread_mutex_lock(&theirs->lock);
    had = theirs->full;
    old_id = theirs->id;
    old_t = theirs->t;
    theirs->full = false;
    pthread_mutex_unlock(&theirs->lock);
    if (had) /* another thread's timer, perhaps still in its outbox */
        cancel_one(old_id, old_t);
    pthread_mutex_lock(&mine->lock);
    mine->full = true;
    mine->id = id;
    mine->t = t;
    pthread_mutex_unlock(&mine->lock);
}

static void cancel_handed_over(void)
{
    for (unsigned i = 0; i < THREADS; i++)
        if (handoffs[i].full) {
            cancel_one(handoffs[i].id, handoffs[i].t);
            handoffs[i].full = false;
        }
}

/* Timers of 0-4 ms (sent to the timer thread at once) or 4-40 ms (held
 * in the outbox first), half cancelled at once (mostly before the timer
 * thread took them in), some cancelled by another thread, and some of
 * 0-30 ms cancelled a little later (mostly after: the removal path),
 * while servers die under them. */
#define LATE_BATCH 64
static void *armer(void *arg)
{
    uint32_t base = (uint32_t)(uintptr_t)arg * PER_THREAD;
    uint64_t seed = base + 1;
    uint32_t late_id[LATE_BATCH];
    gs_timer late_t[LATE_BATCH];
    unsigned nlate = 0;
    for (uint32_t i = 0; i < PER_THREAD; i++) {
        uint32_t id = base + i;
        gs_pid to = atomic_load(&servers[stress_rand(&seed) % SERVERS]);
        payload p = {id, to};
        gs_timer t;
        unsigned how = (unsigned)(stress_rand(&seed) % 8);
        int delay = how == 7 ? (int)(stress_rand(&seed) % 30)
                    : how < 4 ? (int)(stress_rand(&seed) % 5) : 4 + (int)(stress_rand(&seed) % 37);
        int rc = gs_send_after(rt, to, 1, &p, sizeof p, delay, &t);
        CHECKF(rc == GS_OK || rc == GS_ENOPROC, "send_after: %s", gs_strerror(rc));
        if (rc != GS_OK) {
            atomic_store(&cancelled_ok[id], 2); /* never armed */
            continue;
        }
        if (how == 7) {
            late_id[nlate] = id;
            late_t[nlate++] = t;
        } else if (how == 5) {
            hand_over((unsigned)(uintptr_t)arg, id, t);
        } else if (how % 2) {
            cancel_one(id, t);
        }
        if (nlate == LATE_BATCH || (i + 1 == PER_THREAD && nlate > 0)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            for (unsigned k = 0; k < nlate; k++)
                cancel_one(late_id[k], late_t[k]);
            nlate = 0;
        }
    }
    return NULL;
}

static void *restarter(void *arg)
{
    (void)arg;
    uint64_t seed = 77;
    while (!atomic_load(&stop_flag)) {
        stress_replace_random(rt, servers, SERVERS, &target_ops, &seed);
        stress_sleep_us(2000);
    }
    return NULL;
}

static void run_phase(int which)
{
    phase = which;
    memset(delivered, 0, sizeof delivered);
    memset(cancelled_ok, 0, sizeof cancelled_ok);
    atomic_store(&stop_flag, 0);
    gs_runtime_opts opts = {.workers = 2};
    CHECK_RC(gs_runtime_start(&rt, &opts), GS_OK);
    for (int k = 0; k < SERVERS; k++) {
        gs_pid p;
        CHECK_RC(gs_start(rt, &target_ops, NULL, &p), GS_OK);
        atomic_store(&servers[k], p);
    }
    pthread_t th[THREADS], rs;
    if (which == 0)
        pthread_create(&rs, NULL, restarter, NULL);
    for (uintptr_t i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, armer, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    cancel_handed_over();
    atomic_store(&stop_flag, 1);
    if (which == 0)
        pthread_join(rs, NULL);
    /* Every deadline has passed; give the timer thread time to deliver
     * (under TSan on a loaded machine it can be slow), until deliveries
     * stop changing for 300 ms. */
    long last = -1, now_count = 0;
    for (int quiet = 0; quiet < 3;) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        now_count = 0;
        for (int id = 0; id < TOTAL; id++)
            now_count += atomic_load(&delivered[id]);
        quiet = now_count == last ? quiet + 1 : 0;
        last = now_count;
    }
    /* Every timer fired, was cancelled or died with its server: the timer
     * thread must have freed every record (removal requests, purges). */
    gs_runtime_stats st;
    for (int tries = 0;; tries++) {
        CHECK_RC(gs_runtime_stats_get(rt, &st), GS_OK);
        if (st.timers == 0 || tries == 100)
            break;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    CHECKF(st.timers == 0, "%llu timer records still held after every timer ended", (unsigned long long)st.timers);
    CHECK_RC(gs_runtime_stop(rt), GS_OK);

    int ok_cancel = 0, deliveries = 0, dropped = 0, never = 0;
    for (int id = 0; id < TOTAL; id++) {
        int d = atomic_load(&delivered[id]);
        int c = atomic_load(&cancelled_ok[id]);
        CHECKF(d <= 1, "timer %d delivered %d times", id, d);
        CHECKF(!(d == 1 && c == 1), "timer %d was cancelled (GS_OK) and delivered", id);
        if (c == 2)
            never++;
        else if (c == 1)
            ok_cancel++;
        else if (d == 1)
            deliveries++;
        else
            dropped++; /* its server stopped first */
    }
    CHECKF(atomic_load(&wrong_target) == 0, "%d timers reached the wrong server", atomic_load(&wrong_target));
    if (which == 1)
        CHECKF(dropped == 0 && never == 0, "%d timers lost, %d refused, with every server alive", dropped, never);
    printf("stress_timers %s: %d timers: %d delivered, %d cancelled, %d dropped with their server, %d refused\n",
           which == 0 ? "(servers restarted)" : "(servers stay)", TOTAL, deliveries, ok_cancel, dropped, never);
}

/* Threads that arm a few timers (most held in their outbox) and exit at
 * once: the exit sends what they hold on, so every timer fires. */
#define SHORT_THREADS 200
#define SHORT_TIMERS 20
static _Atomic gs_pid short_sink;
static atomic_int short_delivered, short_failures;

static int on_short(gs_ctx *ctx, void *state, const gs_msg *m)
{
    (void)ctx;
    (void)state;
    (void)m;
    atomic_fetch_add(&short_delivered, 1);
    return GS_OK;
}

static const gs_server_ops short_ops = {.name = "short-sink", .handle_info = on_short};

static void *short_lived(void *arg)
{
    uint32_t n = (uint32_t)(uintptr_t)arg;
    for (uint32_t i = 0; i < SHORT_TIMERS; i++)
        if (gs_send_after(rt, atomic_load(&short_sink), 1, &i, sizeof i, (int)(5 + (n + i) % 20), NULL) != GS_OK)
            atomic_fetch_add(&short_failures, 1);
    return NULL;
}

static void run_short_threads_phase(void)
{
    gs_runtime_opts opts = {.workers = 2};
    CHECK_RC(gs_runtime_start(&rt, &opts), GS_OK);
    gs_pid sink;
    CHECK_RC(gs_start(rt, &short_ops, NULL, &sink), GS_OK);
    atomic_store(&short_sink, sink);
    for (uintptr_t i = 0; i < SHORT_THREADS; i += 4) {
        pthread_t th[4];
        for (uintptr_t k = 0; k < 4; k++)
            pthread_create(&th[k], NULL, short_lived, (void *)(i + k));
        for (int k = 0; k < 4; k++)
            pthread_join(th[k], NULL);
    }
    int want = SHORT_THREADS * SHORT_TIMERS;
    for (int tries = 0; atomic_load(&short_delivered) < want && tries < 500; tries++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    CHECKF(atomic_load(&short_failures) == 0, "%d timers not armed", atomic_load(&short_failures));
    CHECKF(atomic_load(&short_delivered) == want, "%d of %d timers of exited threads delivered",
           atomic_load(&short_delivered), want);
    CHECK_RC(gs_runtime_stop(rt), GS_OK);
    printf("stress_timers (%d threads exit with timers held): ok\n", SHORT_THREADS);
}

#define RUNTIMES 30

static pthread_barrier_t rebind_barrier;
static gs_runtime *_Atomic current_rt; /* set by main between two barriers */
static _Atomic gs_pid current_sink;
static atomic_int rebind_failures;

static void *rebinder(void *arg)
{
    uintptr_t who = (uintptr_t)arg;
    for (int round = 0; round < RUNTIMES; round++) {
        pthread_barrier_wait(&rebind_barrier); /* the runtime is up */
        gs_runtime *r = atomic_load(&current_rt);
        gs_pid to = atomic_load(&current_sink);
        for (uint32_t i = 0; i < 300 + who * 50; i++) {
            gs_timer t;
            if (gs_send_after(r, to, 1, &i, sizeof i, 60000, &t) != GS_OK || gs_cancel_timer(r, t) != GS_OK)
                atomic_fetch_add(&rebind_failures, 1);
        }
        pthread_barrier_wait(&rebind_barrier); /* main stops it now */
    }
    return NULL;
}

static void run_rebind_phase(void)
{
    pthread_t th[THREADS];
    pthread_barrier_init(&rebind_barrier, NULL, THREADS + 1);
    for (uintptr_t i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, rebinder, (void *)i);
    for (int round = 0; round < RUNTIMES; round++) {
        gs_runtime *r;
        gs_runtime_opts opts = {.workers = 2};
        CHECK_RC(gs_runtime_start(&r, &opts), GS_OK);
        gs_pid sink;
        CHECK_RC(gs_start(r, &target_ops, NULL, &sink), GS_OK);
        atomic_store(&current_rt, r);
        atomic_store(&current_sink, sink);
        pthread_barrier_wait(&rebind_barrier);
        pthread_barrier_wait(&rebind_barrier);
        CHECK_RC(gs_runtime_stop(r), GS_OK); /* the threads' caches are bound to it */
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&rebind_barrier);
    CHECKF(atomic_load(&rebind_failures) == 0, "%d arm/cancel failures across runtime restarts",
           atomic_load(&rebind_failures));
    printf("stress_timers (threads outlive %d runtimes): ok\n", RUNTIMES);
}

int main(void)
{
    stress_watchdog(300);
    for (int i = 0; i < THREADS; i++)
        pthread_mutex_init(&handoffs[i].lock, NULL);
    run_phase(0);
    run_phase(1);
    run_short_threads_phase();
    run_rebind_phase();
    return 0;
}
