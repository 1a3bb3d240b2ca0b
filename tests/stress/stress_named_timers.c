/* stress_named_timers: timers to a registered name (gs_send_after_name)
 * fire while the name moves between two servers and is now and then held
 * by nobody, and while half of them are cancelled, each right away or by
 * another thread. The timer thread looks the name up (an RCU read of the
 * registry) as other threads register and unregister it, and frees each
 * record's name and message however it ends. Accounting: no timer is
 * delivered twice, none whose cancel returned GS_OK is delivered, each
 * delivery reaches a server that held the name at some point, and the
 * runtime holds no timer at the end (every record freed). Two interval
 * timers to the name (gs_send_interval_name) tick throughout and are
 * cancelled at the end.
 *
 * Plain main (TSan cannot start Criterion binaries). */
#define _GNU_SOURCE
#include <genserver.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stress_common.h"

#define ARMERS 2
#define PER_ARMER 15000
#define TOTAL (ARMERS * PER_ARMER)

static gs_runtime *rt;
static gs_pid holders[2];
static atomic_uchar delivered[TOTAL];
static atomic_uchar cancelled_ok[TOTAL];
static atomic_int bad_payload, stranger, ticks;
static atomic_int moves, mover_stop;

static int on_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    (void)ctx;
    (void)state;
    if (m->tag == 2) { /* an interval timer's tick */
        atomic_fetch_add(&ticks, 1);
        return GS_OK;
    }
    uint32_t id;
    if (m->len != sizeof id) {
        atomic_fetch_add(&bad_payload, 1);
        return GS_OK;
    }
    memcpy(&id, m->data, sizeof id);
    if (id >= TOTAL)
        atomic_fetch_add(&bad_payload, 1);
    else
        atomic_fetch_add(&delivered[id], 1);
    return GS_OK;
}

static const gs_server_ops holder_ops = {.name = "name-holder", .handle_info = on_info};

static void *armer(void *arg)
{
    uint32_t me = (uint32_t)(uintptr_t)arg;
    while (atomic_load(&moves) == 0) /* the name held once, so that some timers find it */
        sched_yield();
    uint32_t seed = 0x2545F491u * (me + 1);
    gs_timer pending[8] = {0};
    uint32_t pending_id[8] = {0};
    for (uint32_t k = 0; k < PER_ARMER; k++) {
        uint32_t id = me * PER_ARMER + k;
        seed = seed * 1664525u + 1013904223u;
        gs_timer t = 0;
        int rc = gs_send_after_name(rt, "moving", 1, &id, sizeof id, (int)(seed >> 28) % 6, &t);
        CHECKF(rc == GS_OK, "gs_send_after_name: %d", rc);
        if ((seed & 3) == 0) { /* cancel now */
            if (gs_cancel_timer(rt, t) == GS_OK)
                atomic_store(&cancelled_ok[id], 1);
        } else if ((seed & 3) == 1) { /* cancel a few timers later, maybe as it fires */
            unsigned slot = (seed >> 8) & 7;
            if (pending[slot] != 0 && gs_cancel_timer(rt, pending[slot]) == GS_OK)
                atomic_store(&cancelled_ok[pending_id[slot]], 1);
            pending[slot] = t;
            pending_id[slot] = id;
        }
    }
    for (unsigned s = 0; s < 8; s++)
        if (pending[s] != 0 && gs_cancel_timer(rt, pending[s]) == GS_OK)
            atomic_store(&cancelled_ok[pending_id[s]], 1);
    return NULL;
}

/* Moves the name between the two holders, with gaps where nobody has it. */
static void *mover(void *arg)
{
    (void)arg;
    unsigned i = 0;
    while (!atomic_load(&mover_stop)) {
        int rc = gs_register(rt, "moving", holders[i++ & 1]);
        CHECKF(rc == GS_OK, "gs_register: %d", rc);
        atomic_fetch_add(&moves, 1);
        struct timespec held = {0, 1000000}, gap = {0, 200000};
        nanosleep(&held, NULL);
        CHECKF(gs_unregister(rt, "moving") == GS_OK, "gs_unregister");
        if ((i & 3) == 0)
            nanosleep(&gap, NULL); /* nobody holds it: timers firing now drop */
    }
    return NULL;
}

int main(void)
{
    stress_watchdog(240);
    gs_runtime_opts o = {.workers = 2};
    CHECK_RC(gs_runtime_start(&rt, &o), GS_OK);
    for (int i = 0; i < 2; i++)
        CHECK_RC(gs_start(rt, &holder_ops, NULL, &holders[i]), GS_OK);
    gs_timer intervals[2];
    CHECK_RC(gs_send_interval_name(rt, "moving", 2, NULL, 0, 1, &intervals[0]), GS_OK);
    CHECK_RC(gs_send_interval_name(rt, "moving", 2, "tick", 4, 3, &intervals[1]), GS_OK);
    pthread_t th[ARMERS + 1];
    CHECKF(pthread_create(&th[ARMERS], NULL, mover, NULL) == 0, "pthread_create");
    for (uintptr_t i = 0; i < ARMERS; i++)
        CHECKF(pthread_create(&th[i], NULL, armer, (void *)i) == 0, "pthread_create");
    for (int i = 0; i < ARMERS; i++)
        pthread_join(th[i], NULL);
    struct timespec ticking = {0, 100000000}; /* the intervals tick on as the name moves */
    nanosleep(&ticking, NULL);
    atomic_store(&mover_stop, 1);
    pthread_join(th[ARMERS], NULL);
    for (int i = 0; i < 2; i++)
        CHECK_RC(gs_cancel_timer(rt, intervals[i]), GS_OK);
    /* Every timer is due within 6 ms: wait until the runtime holds none. */
    gs_runtime_stats st;
    for (int i = 0; i < 5000; i++) {
        CHECK_RC(gs_runtime_stats_get(rt, &st), GS_OK);
        if (st.timers == 0)
            break;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    CHECKF(st.timers == 0, "%llu timers still held", (unsigned long long)st.timers);
    int twice = 0, cancelled_but_delivered = 0, got = 0, cancels = 0;
    for (int id = 0; id < TOTAL; id++) {
        got += atomic_load(&delivered[id]) > 0;
        cancels += atomic_load(&cancelled_ok[id]);
        twice += atomic_load(&delivered[id]) > 1;
        cancelled_but_delivered += atomic_load(&cancelled_ok[id]) && atomic_load(&delivered[id]);
    }
    CHECKF(twice == 0, "%d timers delivered twice", twice);
    CHECKF(cancelled_but_delivered == 0, "%d timers cancelled with GS_OK and delivered",
           cancelled_but_delivered);
    CHECKF(atomic_load(&bad_payload) == 0 && atomic_load(&stranger) == 0, "a message that no timer sent");
    /* Half the timers are cancelled at once or a few timers later, before
     * their 0-5 ms are up: nearly all of those cancels win. */
    CHECKF(cancels > TOTAL / 4, "only %d cancels won: the stress did not run as meant", cancels);
    CHECK_RC(gs_runtime_stop(rt), GS_OK);
    printf("stress_named_timers: %d timers, %d delivered, %d cancelled, %d dropped with nobody holding the "
           "name; "
           "the name moved %d times; %d interval ticks\n",
           TOTAL, got, cancels, TOTAL - got - cancels, atomic_load(&moves), atomic_load(&ticks));
    return 0;
}
