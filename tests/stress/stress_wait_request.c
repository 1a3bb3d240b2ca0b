/* stress_wait_request.c - gs_wait_request on requests it must refuse,
 * racing their completion, under TSan.
 *
 * A requester server sends request after request from its callback (the
 * outcome goes to its handle_info), to a server that answers at once;
 * meanwhile outside threads call gs_wait_request on the newest ids, which
 * must return GS_EINVAL (a server's request) or GS_ENOENT (spent), and
 * never look into the request that its completer is freeing. The
 * requester counts the outcomes it receives: one per request sent.
 * Before gs_wait_request read the slot's flag instead of the request,
 * TSan reported the race in every run of a few seconds (and ASan a use
 * after free in about half of the 10 s runs).
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>

#include "stress_common.h"

enum { WAITERS = 3, RUN_SECONDS = 3, PER_TURN = 500, TAG_ANSWER = 1, TAG_MORE = 2 };

static gs_runtime *rt;
static gs_pid answerer;
static _Atomic gs_request newest;
static atomic_int stop_flag;
static atomic_long sent, outcomes, refused, spent;

static int answer_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    return gs_reply(gs_ctx_runtime(ctx), from, "y", 1);
}

static const gs_server_ops answerer_ops = {.name = "answerer", .handle_call = answer_call};

static int requester_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (atomic_load(&stop_flag))
        return GS_OK;
    for (int i = 0; i < PER_TURN; i++) {
        gs_request q;
        /* Half with a deadline (a wheel timer the completion cancels). */
        int rc = gs_send_request(rt, answerer, TAG_ANSWER, NULL, 0, (i & 1) ? GS_INFINITY : 1000, &q);
        CHECK_RC(rc, GS_OK);
        atomic_store(&newest, q);
        atomic_fetch_add(&sent, 1);
    }
    CHECK_RC(gs_cast(rt, gs_self(ctx), TAG_MORE, NULL, 0), GS_OK); /* the worker back between batches */
    return GS_OK;
}

static int requester_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == GS_TAG_REPLY || m->tag == GS_TAG_REPLY_TIMEOUT)
        atomic_fetch_add(&outcomes, 1);
    return GS_OK;
}

static const gs_server_ops requester_ops = {
    .name = "requester", .handle_cast = requester_cast, .handle_info = requester_info};

static void *waiter(void *arg)
{
    (void)arg;
    char buf[4];
    while (!atomic_load(&stop_flag)) {
        gs_request q = atomic_load(&newest);
        if (q == 0) {
            stress_sleep_us(100);
            continue;
        }
        int rc = gs_wait_request(rt, q, buf, sizeof buf, NULL, 0);
        CHECK_RC2(rc, GS_EINVAL, GS_ENOENT);
        atomic_fetch_add(rc == GS_EINVAL ? &refused : &spent, 1);
    }
    return NULL;
}

int main(void)
{
    stress_watchdog(120);
    gs_runtime_opts opts = {.workers = 2};
    CHECK_RC(gs_runtime_start(&rt, &opts), GS_OK);
    CHECK_RC(gs_start(rt, &answerer_ops, NULL, &answerer), GS_OK);
    gs_pid requester;
    CHECK_RC(gs_start(rt, &requester_ops, NULL, &requester), GS_OK);
    CHECK_RC(gs_cast(rt, requester, TAG_MORE, NULL, 0), GS_OK);
    pthread_t t[WAITERS];
    for (int k = 0; k < WAITERS; k++)
        CHECK(pthread_create(&t[k], NULL, waiter, NULL) == 0);
    sleep(RUN_SECONDS);
    atomic_store(&stop_flag, 1);
    for (int k = 0; k < WAITERS; k++)
        CHECK(pthread_join(t[k], NULL) == 0);
    /* Every request sent gets its one outcome. */
    for (int i = 0; i < 50000 && atomic_load(&outcomes) < atomic_load(&sent); i++)
        stress_sleep_us(100);
    CHECKF(atomic_load(&outcomes) == atomic_load(&sent), "%ld requests sent, %ld outcomes", atomic_load(&sent),
           atomic_load(&outcomes));
    CHECK(atomic_load(&refused) > 0); /* the race was run: some waits met a live request */
    CHECK_RC(gs_runtime_stop(rt), GS_OK);
    printf("stress_wait_request: OK: %ld requests, gs_wait_request refused %ld, found %ld spent\n",
           atomic_load(&sent), atomic_load(&refused), atomic_load(&spent));
    return 0;
}
