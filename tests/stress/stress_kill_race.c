/* stress_kill_race.c - gs_kill racing a server's own exit, under TSan.
 *
 * A server stops itself (its cast returns GS_STOP) while a killer thread
 * calls gs_kill on it once. Whatever the interleaving, the outcome must
 * agree with what gs_kill returned:
 *   - GS_OK: the kill took; terminate does not run, and the monitor's
 *     DOWN says GS_KILLED;
 *   - GS_ENOPROC: the server was exiting on its own already; terminate
 *     ran with GS_NORMAL, and DOWN says GS_NORMAL.
 * The two steps of the race are a few instructions apart, so the killer
 * is held up at random points by a signal whose handler sleeps 1 ms (a
 * stand-in for being preempted). Before gs_kill set its flag in one RMW
 * with the open check, about 1 round in 200 returned GS_OK for a server
 * that then ran terminate and reported its own reason. In one round in
 * four the server first waits in a call that is never answered: only the
 * kill ends it (GS_EKILLED), and the kill is the only way out.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "stress_common.h"

enum { ROUNDS = 4000, ROUND_WAIT_MS = 5000 };

static gs_runtime *rt;
static _Atomic gs_pid victim;
static atomic_int terminated, term_reason, got_down, down_reason;
static atomic_int round_go, round_done, kill_rc;

static _Atomic gs_pid mute;
static atomic_int call_rc;

/* Tag 2: first waits for an answer that never comes (gs_kill ends it). */
static int victim_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == 2)
        atomic_store(&call_rc, gs_call(gs_ctx_runtime(ctx), atomic_load(&mute), 1, NULL, 0, NULL, 0, NULL,
                                       GS_INFINITY));
    return GS_STOP;
}

static int mute_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    return GS_NOREPLY;
}

static const gs_server_ops mute_ops = {.name = "mute", .handle_call = mute_call};

static void victim_terminate(gs_ctx *ctx, void *state, int reason)
{
    atomic_store(&term_reason, reason);
    atomic_fetch_add(&terminated, 1);
}

static const gs_server_ops victim_ops = {
    .name = "victim", .handle_cast = victim_cast, .terminate = victim_terminate};

static int watcher_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == GS_TAG_DOWN && m->len == sizeof(gs_down)) {
        gs_down d;
        memcpy(&d, m->data, sizeof d);
        atomic_store(&down_reason, d.reason);
        atomic_store(&got_down, 1);
    }
    return GS_OK;
}

static const gs_server_ops watcher_ops = {.name = "watcher", .handle_info = watcher_info};

static void hold_up(int sig)
{
    (void)sig;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/* Waits (bounded, parking) until *v == want. */
static void wait_for(atomic_int *v, int want, const char *what)
{
    for (int i = 0; i < ROUND_WAIT_MS * 10 && atomic_load(v) != want; i++)
        stress_sleep_us(100);
    CHECKF(atomic_load(v) == want, "%s did not happen within %d ms", what, ROUND_WAIT_MS);
}

static void *killer(void *arg)
{
    (void)arg;
    for (int seen = 0;;) {
        int g;
        for (int spins = 0; (g = atomic_load(&round_go)) == seen; spins++)
            if (spins > 1000)
                stress_sleep_us(50); /* bounded spin, then park a little */
        if (g < 0)
            return NULL;
        seen = g;
        atomic_store(&kill_rc, gs_kill(rt, atomic_load(&victim)));
        atomic_store(&round_done, g);
    }
}

int main(void)
{
    stress_watchdog(240);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = hold_up; /* stays installed (signal() may reset it) */
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    gs_runtime_opts opts = {.workers = 2};
    CHECK_RC(gs_runtime_start(&rt, &opts), GS_OK);
    gs_pid watcher, m;
    CHECK_RC(gs_start(rt, &watcher_ops, NULL, &watcher), GS_OK);
    CHECK_RC(gs_start(rt, &mute_ops, NULL, &m), GS_OK);
    atomic_store(&mute, m);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, killer, NULL) == 0);
    uint64_t seed = stress_seed(7);
    int killed = 0, exited = 0, released = 0;
    for (int round = 1; round <= ROUNDS; round++) {
        atomic_store(&terminated, 0);
        atomic_store(&got_down, 0);
        atomic_store(&call_rc, 1);
        bool stuck = stress_rand(&seed) % 4 == 0;
        gs_pid v;
        CHECK_RC(gs_start(rt, &victim_ops, NULL, &v), GS_OK);
        CHECK_RC(gs_monitor(rt, watcher, v, NULL), GS_OK);
        atomic_store(&victim, v);
        atomic_store(&round_go, round);
        for (volatile unsigned k = 0, n = (unsigned)(stress_rand(&seed) % 400); k < n; k++)
            ;
        pthread_kill(t, SIGUSR1);
        CHECK_RC2(gs_cast(rt, v, stuck ? 2 : 1, NULL, 0), GS_OK, GS_ENOPROC); /* refused if the kill came first */
        wait_for(&round_done, round, "the kill");
        wait_for(&got_down, 1, "the DOWN");
        int rc = atomic_load(&kill_rc);
        if (stuck) {
            CHECK_RC(rc, GS_OK); /* it cannot have exited by itself */
            int crc = atomic_load(&call_rc);
            CHECKF(crc == 1 || crc == GS_EKILLED, "round %d: the stuck call returned %d", round, crc);
            released += crc == GS_EKILLED;
        }
        if (rc == GS_OK) {
            killed++;
            CHECKF(atomic_load(&terminated) == 0, "round %d: gs_kill returned GS_OK, yet terminate ran (reason %d)",
                   round, atomic_load(&term_reason));
            CHECKF(atomic_load(&down_reason) == GS_KILLED, "round %d: gs_kill returned GS_OK, DOWN says %d", round,
                   atomic_load(&down_reason));
        } else {
            CHECK_RC(rc, GS_ENOPROC);
            exited++;
            /* A DOWN is sent after terminate: it has run by now. */
            CHECKF(atomic_load(&terminated) == 1 && atomic_load(&term_reason) == GS_NORMAL,
                   "round %d: gs_kill said GS_ENOPROC, terminate ran %d times (reason %d)", round,
                   atomic_load(&terminated), atomic_load(&term_reason));
            CHECKF(atomic_load(&down_reason) == GS_NORMAL, "round %d: gs_kill said GS_ENOPROC, DOWN says %d", round,
                   atomic_load(&down_reason));
        }
    }
    atomic_store(&round_go, -1);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_RC(gs_runtime_stop(rt), GS_OK);
    printf("stress_kill_race: OK: %d rounds, %d killed (%d of them released from a call), %d exited on their own "
           "first\n", ROUNDS, killed, released, exited);
    return 0;
}
