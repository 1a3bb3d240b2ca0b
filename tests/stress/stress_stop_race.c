/* stress_stop_race.c - two threads stopping one server at once, under TSan.
 *
 * 2 workers. ROUNDS rounds of: main starts a server (sometimes with a
 * backlog of casts already queued), then, released together by a
 * barrier, two stopper threads gs_stop it at the same moment (with
 * different reasons) while a third thread casts to it and calls it, and
 * now and then stops it too.
 * Checked every round: each gs_stop returns GS_OK or GS_ENOPROC and at
 * least one returns GS_OK; terminate ran exactly once, with the reason of
 * a gs_stop that returned GS_OK; every cast and call returns GS_OK or
 * GS_ENOPROC, and once one has returned GS_ENOPROC all later ones do too;
 * a call that succeeds sees every cast accepted before it; afterwards the
 * pid is dead for good.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "stress_common.h"

enum {
    ROUNDS = 10000,
    USER_OPS = 8,          /* casts + calls by the third thread per round */
    TIMEOUT_MS = 20000,    /* generous: a timeout here is a failure */
};

enum { TAG_PING = 1, TAG_GET };

/* The three gs_stop callers and their reasons. */
enum { STOPPER_A, STOPPER_B, STOPPER_C, NSTOPPERS };
static const int STOP_REASON[NSTOPPERS] = {GS_NORMAL, 9, 10};

typedef struct {
    uint32_t round;
    uint64_t handled;
} srv_state;

static atomic_uint g_term_count[ROUNDS];
static atomic_int g_term_reason[ROUNDS];
/* Plain on purpose: main reads it after a gs_stop returned GS_OK, so
 * ThreadSanitizer checks that terminate happens-before that return. */
static int g_term_seen[ROUNDS];

static int srv_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    srv_state *s = state;
    s->round = *(const uint32_t *)arg;
    return GS_OK;
}

static int srv_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    srv_state *s = state;
    CHECK(msg->tag == TAG_PING);
    s->handled++;
    return GS_OK;
}

static int srv_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    srv_state *s = state;
    CHECK(msg->tag == TAG_GET);
    CHECK_RC(gs_reply(gs_ctx_runtime(ctx), from, &s->handled, sizeof s->handled), GS_OK);
    return GS_OK;
}

static void srv_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    srv_state *s = state;
    CHECK(s->round < ROUNDS);
    unsigned before = atomic_fetch_add(&g_term_count[s->round], 1);
    CHECKF(before == 0, "round %u: terminate ran %u times", (unsigned)s->round, before + 1);
    atomic_store(&g_term_reason[s->round], reason);
    g_term_seen[s->round] = 1;
}

static const gs_server_ops srv_ops = {
    .name = "stress_stop_race",
    .state_size = sizeof(srv_state),
    .init = srv_init,
    .handle_call = srv_call,
    .handle_cast = srv_cast,
    .terminate = srv_terminate,
};

/* ---- shared per-round data: written by main between the barriers ---- */

static gs_runtime *g_rt;
static gs_pid g_pid;             /* this round's server */
static uint64_t g_backlog;       /* casts main queued before the round */
static bool g_c_stops;           /* whether the third thread stops it too */
static int g_stop_rc[NSTOPPERS]; /* each written by its own thread, read after the barrier */
static pthread_barrier_t g_go, g_done;
static uint64_t g_calls_ok, g_calls_noproc, g_casts_ok, g_casts_noproc;

/* Half the time no pause (a true tie), else a short or a longer one. */
static void random_pause(uint64_t *rng)
{
    uint64_t r = stress_rand(rng);
    uint64_t n = r % 4 == 0 ? (r >> 8) % 64 : r % 4 == 1 ? (r >> 8) % 8 : 0;
    for (uint64_t i = 0; i < n; i++)
        sched_yield();
}

static void *stopper_main(void *p)
{
    int who = (int)(intptr_t)p;
    uint64_t rng = stress_seed((uint64_t)who);
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_wait(&g_go);
        random_pause(&rng);
        int rc = gs_stop(g_rt, g_pid, STOP_REASON[who], TIMEOUT_MS);
        CHECK_RC2(rc, GS_OK, GS_ENOPROC);
        g_stop_rc[who] = rc;
        pthread_barrier_wait(&g_done);
    }
    return NULL;
}

static void *user_main(void *p)
{
    (void)p;
    uint64_t rng = stress_seed(77);
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_wait(&g_go);
        bool dead = false;
        uint64_t accepted = g_backlog; /* casts accepted so far, main's included */
        int stop_at = g_c_stops ? (int)(stress_rand(&rng) % USER_OPS) : -1;
        g_stop_rc[STOPPER_C] = GS_ENOPROC;
        for (int i = 0; i < USER_OPS; i++) {
            if (i == stop_at) {
                int rc = gs_stop(g_rt, g_pid, STOP_REASON[STOPPER_C], TIMEOUT_MS);
                CHECK_RC2(rc, GS_OK, GS_ENOPROC);
                g_stop_rc[STOPPER_C] = rc;
                dead = true; /* stopped and terminated, by us or another */
                continue;
            }
            int rc;
            if (stress_rand(&rng) % 2) {
                rc = gs_cast(g_rt, g_pid, TAG_PING, NULL, 0);
                CHECK_RC2(rc, GS_OK, GS_ENOPROC);
                if (rc == GS_OK) {
                    accepted++;
                    g_casts_ok++;
                } else {
                    g_casts_noproc++;
                }
            } else {
                uint64_t handled = 0;
                rc = gs_call(g_rt, g_pid, TAG_GET, NULL, 0, &handled, sizeof handled, NULL,
                             TIMEOUT_MS);
                CHECK_RC2(rc, GS_OK, GS_ENOPROC);
                if (rc == GS_OK) {
                    CHECKF(handled == accepted,
                           "round %d: call saw %llu casts handled, %llu accepted before it",
                           round, (unsigned long long)handled, (unsigned long long)accepted);
                    g_calls_ok++;
                } else {
                    g_calls_noproc++;
                }
            }
            CHECKF(!(dead && rc == GS_OK),
                   "round %d: a server was reached after it was seen dead", round);
            if (rc == GS_ENOPROC)
                dead = true;
        }
        pthread_barrier_wait(&g_done);
    }
    return NULL;
}

int main(void)
{
    stress_watchdog(300);
    gs_runtime_opts opts = {.workers = 2};
    CHECK_RC(gs_runtime_start(&g_rt, &opts), GS_OK);
    CHECK(pthread_barrier_init(&g_go, NULL, 4) == 0);
    CHECK(pthread_barrier_init(&g_done, NULL, 4) == 0);

    pthread_t th[3];
    CHECK(pthread_create(&th[0], NULL, stopper_main, (void *)(intptr_t)STOPPER_A) == 0);
    CHECK(pthread_create(&th[1], NULL, stopper_main, (void *)(intptr_t)STOPPER_B) == 0);
    CHECK(pthread_create(&th[2], NULL, user_main, NULL) == 0);

    uint64_t rng = stress_seed(4242);
    unsigned both_ok = 0, triple = 0;
    double t0 = stress_now_s();
    for (uint32_t round = 0; round < ROUNDS; round++) {
        CHECK_RC(gs_start(g_rt, &srv_ops, &round, &g_pid), GS_OK);
        g_backlog = stress_rand(&rng) % 4 == 0 ? stress_rand(&rng) % 50 : 0;
        for (uint64_t i = 0; i < g_backlog; i++)
            CHECK_RC(gs_cast(g_rt, g_pid, TAG_PING, NULL, 0), GS_OK);
        g_c_stops = round % 4 == 0;
        triple += g_c_stops;

        pthread_barrier_wait(&g_go);
        pthread_barrier_wait(&g_done);

        int oks = 0;
        bool reason_ok = false;
        int reason = atomic_load(&g_term_reason[round]);
        for (int s = 0; s < NSTOPPERS; s++) {
            if (g_stop_rc[s] == GS_OK) {
                oks++;
                reason_ok |= reason == STOP_REASON[s];
            }
        }
        CHECKF(oks >= 1, "round %u: no gs_stop returned GS_OK", (unsigned)round);
        both_ok += g_stop_rc[STOPPER_A] == GS_OK && g_stop_rc[STOPPER_B] == GS_OK;
        CHECKF(atomic_load(&g_term_count[round]) == 1, "round %u: terminate ran %u times",
               (unsigned)round, atomic_load(&g_term_count[round]));
        CHECK(g_term_seen[round] == 1);
        CHECKF(reason_ok, "round %u: terminate reason %d is no successful gs_stop's",
               (unsigned)round, reason);
        /* Dead for good. */
        uint64_t v;
        CHECK_RC(gs_cast(g_rt, g_pid, TAG_PING, NULL, 0), GS_ENOPROC);
        CHECK_RC(gs_call(g_rt, g_pid, TAG_GET, NULL, 0, &v, sizeof v, NULL, TIMEOUT_MS),
                 GS_ENOPROC);
        CHECK_RC(gs_stop(g_rt, g_pid, GS_NORMAL, TIMEOUT_MS), GS_ENOPROC);
    }
    double t1 = stress_now_s();
    for (int i = 0; i < 3; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
    CHECK(pthread_barrier_destroy(&g_go) == 0);
    CHECK(pthread_barrier_destroy(&g_done) == 0);
    CHECK_RC(gs_runtime_stop(g_rt), GS_OK);
    for (int r = 0; r < ROUNDS; r++)
        CHECK(atomic_load(&g_term_count[r]) == 1);

    printf("stress_stop_race: OK: %d servers each stopped by 2-3 threads at once "
           "(%u rounds where both stoppers got GS_OK, %u with a third stopper), exactly one "
           "terminate each; casts %llu ok / %llu ENOPROC, calls %llu ok / %llu ENOPROC, "
           "in %.2f s\n",
           ROUNDS, both_ok, triple, (unsigned long long)g_casts_ok,
           (unsigned long long)g_casts_noproc, (unsigned long long)g_calls_ok,
           (unsigned long long)g_calls_noproc, t1 - t0);
    return 0;
}
