/* test_pids.c - pid generations, made-up pids, pids of other runtimes. */
#include "common.h"

enum { C_COUNT = 1, K_GET = 10 };

static atomic_long g_messages; /* every message any server handled */

typedef struct {
    int64_t count;
} pid_state;

static int p_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    (void)msg;
    pid_state *s = state;
    s->count++;
    atomic_fetch_add(&g_messages, 1);
    return GS_OK;
}

static int p_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    pid_state *s = state;
    if (msg->tag != K_GET)
        atomic_fetch_add(&g_messages, 1);
    gs_reply(gs_ctx_runtime(ctx), from, &s->count, sizeof s->count);
    return GS_OK;
}

static const gs_server_ops pid_ops = {
    .name = "pid-test",
    .state_size = sizeof(pid_state),
    .handle_cast = p_cast,
    .handle_call = p_call,
};

static int cmp_pid(const void *a, const void *b)
{
    gs_pid x = *(const gs_pid *)a, y = *(const gs_pid *)b;
    return x < y ? -1 : x > y;
}

static bool contains(const gs_pid *sorted, size_t n, gs_pid p)
{
    return bsearch(&p, sorted, n, sizeof p, cmp_pid) != NULL;
}

static void assert_dead(gs_runtime *rt, gs_pid p)
{
    int64_t v;
    cr_assert_eq(gs_cast(rt, p, C_COUNT, NULL, 0), GS_ENOPROC, "cast to dead pid %#" PRIx64, p);
    cr_assert_eq(gs_call(rt, p, C_COUNT, NULL, 0, &v, sizeof v, NULL, 1000), GS_ENOPROC,
                 "call to dead pid %#" PRIx64, p);
    cr_assert_eq(gs_stop(rt, p, GS_NORMAL, 1000), GS_ENOPROC, "stop of dead pid %#" PRIx64, p);
}

Test(pids, stale_pids_stay_dead_after_slot_reuse, .timeout = 40)
{
    atomic_store(&g_messages, 0);
    gs_runtime *rt = rt_new(2);
    enum { N = 500, ROUNDS = 20 };
    gs_pid *dead = calloc((size_t)N * (ROUNDS + 1), sizeof *dead);
    gs_pid live[N];
    size_t ndead = 0;
    cr_assert_not_null(dead);
    for (int round = 0; round <= ROUNDS; round++) {
        for (int i = 0; i < N; i++) {
            live[i] = start_ok(rt, &pid_ops, NULL);
        }
        /* new pids never equal any old pid */
        qsort(dead, ndead, sizeof *dead, cmp_pid);
        for (int i = 0; i < N; i++)
            cr_assert(!contains(dead, ndead, live[i]),
                      "round %d: a new server got the pid %#" PRIx64 " of a dead one", round,
                      live[i]);
        /* every dead pid is still dead (check a rotating sample, all in the last round) */
        for (size_t k = 0; k < ndead; k++) {
            if (round != ROUNDS && (k % 7) != (size_t)(round % 7))
                continue;
            assert_dead(rt, dead[k]);
        }
        /* none of the new servers received anything */
        for (int i = 0; i < N; i++) {
            int64_t v = -1;
            cr_assert_eq(call_i64(rt, live[i], K_GET, 0, &v, 5000), GS_OK);
            cr_assert_eq(v, 0, "round %d: server %d got %" PRId64 " messages meant for dead pids",
                         round, i, v);
        }
        if (round == ROUNDS)
            break;
        for (int i = 0; i < N; i++) {
            stop_ok(rt, live[i]);
            dead[ndead++] = live[i];
        }
    }
    cr_assert_eq(atomic_load(&g_messages), 0);
    rt_free(rt);
    free(dead);
}

Test(pids, random_pids_never_crash, .timeout = 40)
{
    atomic_store(&g_messages, 0);
    gs_runtime *rt = rt_new(2);
    enum { LIVE = 16 };
    gs_pid live[LIVE];
    for (int i = 0; i < LIVE; i++)
        live[i] = start_ok(rt, &pid_ops, NULL);
    gs_pid sorted[LIVE];
    memcpy(sorted, live, sizeof sorted);
    qsort(sorted, LIVE, sizeof *sorted, cmp_pid);
    uint64_t seed = 0xC0FFEE1234567ull;
    int tried = 0;
    for (int i = 0; i < 4000; i++) {
        gs_pid p = xorshift64(&seed);
        if (i % 4 == 1)
            p &= 0xFFFFFFFFull; /* small values */
        if (i % 4 == 2)
            p &= 0xFFFFull;
        if (contains(sorted, LIVE, p))
            continue;
        tried++;
        int64_t v;
        cr_assert_eq(gs_cast(rt, p, C_COUNT, "r", 1), GS_ENOPROC, "cast %#" PRIx64, p);
        cr_assert_eq(gs_call(rt, p, C_COUNT, NULL, 0, &v, sizeof v, NULL, 100), GS_ENOPROC,
                     "call %#" PRIx64, p);
        cr_assert_eq(gs_stop(rt, p, GS_NORMAL, 100), GS_ENOPROC, "stop %#" PRIx64, p);
    }
    cr_assert_gt(tried, 3000);
    /* pids one bit away from a live pid are made up too */
    for (int i = 0; i < LIVE; i++) {
        for (int bit = 0; bit < 64; bit++) {
            gs_pid p = live[i] ^ ((gs_pid)1 << bit);
            if (contains(sorted, LIVE, p))
                continue;
            cr_assert_eq(gs_cast(rt, p, C_COUNT, NULL, 0), GS_ENOPROC,
                         "pid %#" PRIx64 " (live %#" PRIx64 " with bit %d flipped) accepted", p,
                         live[i], bit);
        }
    }
    /* the live servers received nothing */
    for (int i = 0; i < LIVE; i++) {
        int64_t v = -1;
        cr_assert_eq(call_i64(rt, live[i], K_GET, 0, &v, 5000), GS_OK);
        cr_assert_eq(v, 0, "live server %d received %" PRId64 " messages sent to made-up pids", i,
                     v);
    }
    cr_assert_eq(atomic_load(&g_messages), 0);
    rt_free(rt);
}

Test(pids, pid_of_another_runtime_is_unknown, .timeout = 15)
{
    atomic_store(&g_messages, 0);
    gs_runtime *rt1 = rt_new(1);
    gs_runtime *rt2 = rt_new(1);
    gs_pid p1 = start_ok(rt1, &pid_ops, NULL);
    gs_pid p2 = start_ok(rt2, &pid_ops, NULL);
    cr_assert_neq(p1, p2, "servers of two runtimes share a pid");
    assert_dead(rt2, p1);
    assert_dead(rt1, p2);
    int64_t v = -1;
    cr_assert_eq(call_i64(rt1, p1, K_GET, 0, &v, 5000), GS_OK);
    cr_assert_eq(v, 0);
    cr_assert_eq(call_i64(rt2, p2, K_GET, 0, &v, 5000), GS_OK);
    cr_assert_eq(v, 0);
    cr_assert_eq(atomic_load(&g_messages), 0);
    rt_free(rt1);
    rt_free(rt2);
}

Test(pids, pids_are_nonzero_and_formatted, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    char buf[64];
    for (int i = 0; i < 10; i++) {
        gs_pid p = start_ok(rt, &pid_ops, NULL);
        cr_assert_neq(p, GS_NOPID);
        buf[0] = '\0';
        cr_assert_eq(gs_pid_format(p, buf, sizeof buf), buf);
        cr_assert_gt(strlen(buf), 0, "gs_pid_format produced an empty string");
    }
    rt_free(rt);
}

/* ---- several threads start and stop servers at once ---- */

#define CHURN_THREADS 4
#define CHURN_EACH 3000

struct churn_arg {
    gs_runtime *rt;
    gs_pid *pids; /* CHURN_EACH slots */
    int errors, first_rc, wrong;
};

static void *churn(void *p)
{
    struct churn_arg *a = p;
    for (int i = 0; i < CHURN_EACH; i++) {
        int rc = gs_start(a->rt, &pid_ops, NULL, &a->pids[i]);
        if (rc == GS_OK) {
            rc = gs_cast(a->rt, a->pids[i], C_COUNT, NULL, 0);
            int64_t v = -1;
            if (rc == GS_OK)
                rc = call_i64(a->rt, a->pids[i], K_GET, 0, &v, 10000);
            if (rc == GS_OK && v != 1)
                a->wrong++;
            if (rc == GS_OK && (i % 2) == 0)
                rc = gs_stop(a->rt, a->pids[i], GS_NORMAL, 10000);
        }
        if (rc != GS_OK) {
            if (!a->errors)
                a->first_rc = rc;
            a->errors++;
        }
    }
    return NULL;
}

Test(pids, concurrent_start_and_stop_give_unique_pids, .timeout = 40)
{
    atomic_store(&g_messages, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid *all = calloc((size_t)CHURN_THREADS * CHURN_EACH, sizeof *all);
    cr_assert_not_null(all);
    pthread_t th[CHURN_THREADS];
    struct churn_arg args[CHURN_THREADS];
    for (int t = 0; t < CHURN_THREADS; t++) {
        args[t] = (struct churn_arg){.rt = rt, .pids = all + (size_t)t * CHURN_EACH};
        cr_assert_eq(pthread_create(&th[t], NULL, churn, &args[t]), 0);
    }
    for (int t = 0; t < CHURN_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < CHURN_THREADS; t++) {
        cr_assert_eq(args[t].errors, 0, "thread %d: %d failures (first %d %s)", t, args[t].errors,
                     args[t].first_rc, gs_strerror(args[t].first_rc));
        cr_assert_eq(args[t].wrong, 0, "thread %d: %d servers saw a wrong count", t,
                     args[t].wrong);
    }
    size_t n = (size_t)CHURN_THREADS * CHURN_EACH;
    cr_assert_eq(atomic_load(&g_messages), (long)n, "messages handled: %ld, sent %zu",
                 atomic_load(&g_messages), n);
    /* the stopped half is dead, the rest alive and untouched */
    for (int t = 0; t < CHURN_THREADS; t++) {
        for (int i = 0; i < CHURN_EACH; i += 7) {
            gs_pid p = args[t].pids[i];
            int64_t v = -1;
            if (i % 2 == 0) {
                cr_assert_eq(gs_cast(rt, p, C_COUNT, NULL, 0), GS_ENOPROC);
            } else {
                cr_assert_eq(call_i64(rt, p, K_GET, 0, &v, 5000), GS_OK);
                cr_assert_eq(v, 1, "server got %" PRId64 " messages, sent 1", v);
            }
        }
    }
    qsort(all, n, sizeof *all, cmp_pid);
    for (size_t i = 1; i < n; i++)
        cr_assert_neq(all[i], all[i - 1], "pid %#" PRIx64 " was handed out twice", all[i]);
    rt_free(rt);
    free(all);
}
