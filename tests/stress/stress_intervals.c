/* stress_intervals: threads arm interval timers (1-3 ms) on a few servers,
 * read them and cancel them a little later, while the servers are stopped
 * and restarted and each server cancels interval timers of its own from
 * its callbacks. Checks, exactly:
 *   - a timer cancelled with GS_OK from a thread gets no tick handled
 *     after a call to its server that the canceller made afterwards (a
 *     tick already being handled when the cancel returned is over by then;
 *     one still queued is dropped);
 *   - a server that cancelled its own timer never handles a tick of it
 *     afterwards;
 *   - every record comes back: the runtime holds no timer at the end.
 * Under ThreadSanitizer this covers the timer thread re-filing a ticking
 * record (deadline_ns, the wheel) against cancels, reads, the workers'
 * check of each tick and the purge of a stopped server. */
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
#define PER_THREAD 400
#define SERVERS 4
#define TOTAL (THREADS * PER_THREAD)
#define SELF_ID UINT32_MAX /* the payload of a server's own timer */

enum { C_SYNC = 1, C_ARM_SELF };

static gs_runtime *rt;
static _Atomic gs_pid servers[SERVERS];
static atomic_int ticks[TOTAL];            /* ticks handled per thread-armed timer */
static atomic_int self_ticks_after_cancel; /* ticks of a server's own timer after it cancelled it */
static atomic_int stop_flag;

typedef struct ticker {
    gs_timer own;
    bool own_cancelled;
    int own_ticks;
} ticker;

static int ticker_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    (void)arg;
    memset(state, 0, sizeof(ticker));
    return GS_OK;
}

static int ticker_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    ticker *t = state;
    uint32_t id;
    CHECK(m->len == sizeof id && m->sender == GS_NOPID);
    memcpy(&id, m->data, sizeof id);
    if (id != SELF_ID) {
        CHECK(id < TOTAL);
        atomic_fetch_add(&ticks[id], 1);
        return GS_OK;
    }
    if (t->own_cancelled) {
        atomic_fetch_add(&self_ticks_after_cancel, 1);
        return GS_OK;
    }
    /* Cancel our own timer at its third tick (others may be queued). */
    if (++t->own_ticks == 3) {
        CHECK_RC(gs_cancel_timer(gs_ctx_runtime(ctx), t->own), GS_OK);
        t->own_cancelled = true;
    }
    return GS_OK;
}

static int ticker_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    ticker *t = state;
    if (m->tag == C_ARM_SELF && (t->own == 0 || t->own_cancelled)) {
        uint32_t id = SELF_ID;
        CHECK_RC(gs_send_interval(gs_ctx_runtime(ctx), gs_self(ctx), 1, &id, sizeof id, 1, &t->own), GS_OK);
        t->own_cancelled = false;
        t->own_ticks = 0;
    }
    return gs_reply(gs_ctx_runtime(ctx), from, NULL, 0);
}

static const gs_server_ops ticker_ops = {.name = "ticker",
                                         .state_size = sizeof(ticker),
                                         .init = ticker_init,
                                         .handle_info = ticker_info,
                                         .handle_call = ticker_call};

static void *armer(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    uint64_t seed = stress_seed(me);
    for (uint32_t k = 0; k < PER_THREAD; k++) {
        uint32_t id = me * PER_THREAD + k;
        gs_pid to = atomic_load(&servers[stress_rand(&seed) % SERVERS]);
        if (stress_rand(&seed) % 8 == 0)
            CHECK_RC2(gs_call(rt, to, C_ARM_SELF, NULL, 0, NULL, 0, NULL, 5000), GS_OK, GS_ENOPROC);
        gs_timer t = 0;
        int rc = gs_send_interval(rt, to, 1, &id, sizeof id, 1 + (int)(stress_rand(&seed) % 3), &t);
        CHECK_RC2(rc, GS_OK, GS_ENOPROC); /* the restarter may have stopped it */
        if (rc != GS_OK)
            continue;
        stress_sleep_us((long)(stress_rand(&seed) % 4000));
        int left = -1;
        rc = gs_read_timer(rt, t, &left);
        CHECK_RC2(rc, GS_OK, GS_ENOENT);
        CHECK(rc != GS_OK || (left >= 0 && left <= 3));
        rc = gs_cancel_timer(rt, t);
        CHECK_RC2(rc, GS_OK, GS_ENOENT); /* ENOENT: its server was stopped */
        if (rc != GS_OK)
            continue;
        /* Past this call, no tick of t may be handled. */
        if (gs_call(rt, to, C_SYNC, NULL, 0, NULL, 0, NULL, 5000) != GS_OK)
            continue; /* stopped meanwhile: it handles nothing more anyway */
        int seen = atomic_load(&ticks[id]);
        stress_sleep_us(5000);
        CHECKF(atomic_load(&ticks[id]) == seen, "timer %u: %d ticks after its cancel, %d before", id,
               atomic_load(&ticks[id]) - seen, seen);
    }
    return NULL;
}

static void *restarter(void *arg)
{
    (void)arg;
    uint64_t seed = 77;
    while (!atomic_load(&stop_flag)) {
        stress_replace_random(rt, servers, SERVERS, &ticker_ops, &seed);
        stress_sleep_us(20000);
    }
    return NULL;
}

int main(void)
{
    stress_watchdog(240);
    gs_runtime_opts opts = {.workers = 2};
    CHECK_RC(gs_runtime_start(&rt, &opts), GS_OK);
    for (int k = 0; k < SERVERS; k++) {
        gs_pid p;
        CHECK_RC(gs_start(rt, &ticker_ops, NULL, &p), GS_OK);
        atomic_store(&servers[k], p);
    }
    pthread_t th[THREADS], rs;
    pthread_create(&rs, NULL, restarter, NULL);
    for (uintptr_t i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, armer, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&stop_flag, 1);
    pthread_join(rs, NULL);
    CHECKF(atomic_load(&self_ticks_after_cancel) == 0, "%d ticks of servers' own timers after they cancelled them",
           atomic_load(&self_ticks_after_cancel));
    /* Stopping the servers purges what they still have (their own timers
     * left running); then the runtime holds no timer record. */
    for (int k = 0; k < SERVERS; k++)
        CHECK_RC(gs_stop(rt, atomic_load(&servers[k]), GS_NORMAL, 5000), GS_OK);
    gs_runtime_stats s;
    for (int i = 0; i < 500; i++) {
        CHECK_RC(gs_runtime_stats_get(rt, &s), GS_OK);
        if (s.timers == 0)
            break;
        stress_sleep_us(10000);
    }
    CHECKF(s.timers == 0, "%llu timer records still held", (unsigned long long)s.timers);
    long total = 0;
    for (int i = 0; i < TOTAL; i++)
        total += atomic_load(&ticks[i]);
    CHECK_RC(gs_runtime_stop(rt), GS_OK);
    printf("stress_intervals: %d timers, %ld ticks handled: ok\n", TOTAL, total);
    return 0;
}
