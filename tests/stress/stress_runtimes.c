/* stress_runtimes.c - several runtimes started, used and stopped side by
 * side, under TSan.
 *
 * Process-wide state is shared by every runtime: the tag table, the
 * fiber pools' page size, the outside threads' timer caches (each bound
 * to one runtime at a time). Two driver threads each run ROUNDS rounds of:
 * start a runtime with one worker, start a pair of servers, make the
 * caller call the callee from its callback (a suspended fiber) with a
 * timeout, cast to it, arm and cancel timers from the driver thread, and
 * stop the runtime; both drivers start together each round (a barrier),
 * so the runtimes' first fibers, tags and caches are taken at once.
 * Checked every round: every call answers its own value; every pid and
 * timer handle of the previous round's runtime is unknown to this one
 * (GS_ENOPROC, GS_ENOENT), though a new runtime may take a tag freed
 * earlier.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "stress_common.h"

enum { ROUNDS = 300, DRIVERS = 2, CALLS = 20, TIMERS = 40 };
enum { TAG_ECHO = 1, TAG_SET_PEER };

typedef struct {
    gs_pid peer;
} caller_state;

static int echo_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    int64_t v;
    CHECK(m->len == sizeof v);
    memcpy(&v, m->data, sizeof v);
    gs_reply(gs_ctx_runtime(ctx), from, &v, sizeof v);
    return GS_OK;
}

static const gs_server_ops echo_ops = {.name = "echo", .handle_call = echo_call};

static int caller_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    caller_state *s = state;
    if (m->tag == TAG_SET_PEER && m->len == sizeof s->peer)
        memcpy(&s->peer, m->data, sizeof s->peer);
    return GS_OK;
}

/* A call from the callback: the caller's fiber is set aside until the
 * reply comes. */
static int caller_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    caller_state *s = state;
    int64_t v, got = -1;
    memcpy(&v, m->data, sizeof v);
    CHECK_RC(gs_call(gs_ctx_runtime(ctx), s->peer, TAG_ECHO, &v, sizeof v, &got, sizeof got, NULL, 20000),
             GS_OK);
    CHECK(got == v);
    return gs_reply(gs_ctx_runtime(ctx), from, &got, sizeof got); /* safe from handle_call */
}

static const gs_server_ops caller_ops = {.name = "caller",
                                         .state_size = sizeof(caller_state),
                                         .handle_cast = caller_cast,
                                         .handle_call = caller_call};

static pthread_barrier_t round_start;

static void *driver(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    gs_pid old_pid = GS_NOPID;
    gs_timer old_timer = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_wait(&round_start);
        gs_runtime *rt;
        gs_runtime_opts o = {.workers = 1};
        CHECK_RC(gs_runtime_start(&rt, &o), GS_OK);
        gs_pid echo, caller;
        CHECK_RC(gs_start(rt, &echo_ops, NULL, &echo), GS_OK);
        CHECK_RC(gs_start(rt, &caller_ops, NULL, &caller), GS_OK);
        CHECK_RC(gs_cast(rt, caller, TAG_SET_PEER, &echo, sizeof echo), GS_OK);
        if (old_pid != GS_NOPID) {
            /* The last runtime's pid and timer name nothing here. */
            CHECK_RC(gs_cast(rt, old_pid, TAG_ECHO, NULL, 0), GS_ENOPROC);
            CHECK_RC(gs_cancel_timer(rt, old_timer), GS_ENOENT);
        }
        for (int i = 0; i < CALLS; i++) {
            int64_t v = (int64_t)(id << 32 | (uint64_t)(round * CALLS + i)), got = -1;
            CHECK_RC(gs_call(rt, caller, TAG_ECHO, &v, sizeof v, &got, sizeof got, NULL, 20000), GS_OK);
            CHECK(got == v);
        }
        for (int i = 0; i < TIMERS; i++) {
            gs_timer t;
            CHECK_RC(gs_send_after(rt, echo, 9, &i, sizeof i, 60000, &t), GS_OK);
            if (i % 2 == 0)
                CHECK_RC(gs_cancel_timer(rt, t), GS_OK);
            else
                old_timer = t; /* left pending: the stop frees it */
        }
        old_pid = caller;
        CHECK_RC(gs_runtime_stop(rt), GS_OK);
    }
    return NULL;
}

int main(void)
{
    stress_watchdog(600);
    CHECK(pthread_barrier_init(&round_start, NULL, DRIVERS) == 0);
    pthread_t th[DRIVERS];
    for (uintptr_t i = 0; i < DRIVERS; i++)
        CHECK(pthread_create(&th[i], NULL, driver, (void *)i) == 0);
    for (int i = 0; i < DRIVERS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&round_start);
    printf("stress_runtimes: %d rounds x %d runtimes side by side: ok\n", ROUNDS, DRIVERS);
    return 0;
}
