/* stress_lifecycle.c - servers starting, crashing and stopping, under TSan.
 *
 * 2 workers. NTHREADS outside threads each run ITERS rounds of: start a
 * server (some inits refuse with GS_STOP, some fail with a code), cast it
 * a few pings (a ping crashes the server now and then, at random), call
 * it, then end it one way or another: gs_stop (normal or a user reason),
 * a cast that makes it crash, a cast that makes it return GS_STOP, or
 * hand it to a shared pool where any thread may cast to it or stop it.
 * Each round also checks that pids known to be dead (their gs_stop
 * returned GS_OK) give GS_ENOPROC to cast, call and stop, whatever slot
 * reuse happened meanwhile. A caster thread casts to pooled servers all
 * along, and is joined right before gs_runtime_stop, which then stops the
 * servers still alive with casts still in their mailboxes.
 * Checked at the end: terminate ran exactly once per successful start
 * and never for a refused one, with a reason that matches how the server
 * ended; the custom (quiet) logger saw exactly one crash report per
 * crash and no other error; a server terminated by the runtime's
 * shutdown handled every cast that had been accepted for it.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "stress_common.h"

enum {
    NTHREADS = 4,
    ITERS = 3000,
    MAXID = NTHREADS * ITERS,
    POOL_CAP = 256,
    DEAD_RING = 64,
    CALL_TIMEOUT_MS = 30000,
};

/* TAG_PING crashes the server now and then (only its owner sends it);
 * TAG_POKE, sent by other threads to pooled servers, never does. */
enum { TAG_PING = 1, TAG_POKE, TAG_CRASH, TAG_QUIT, TAG_GET };

#define CRASH_CODE (-1000)     /* what a crashing callback returns */
#define INIT_FAIL_CODE (-1001) /* what a failing init returns */
#define USER_REASON 77         /* a user-defined gs_stop reason */

enum { MODE_OK, MODE_REFUSE, MODE_FAIL };

typedef struct {
    uint32_t id;
    int mode;
} init_arg;

typedef struct {
    uint32_t id;
    uint64_t rng;
    uint64_t handled; /* casts handled */
    bool crashed;     /* returned CRASH_CODE */
    bool quit;        /* returned GS_STOP */
} srv_state;

static atomic_uint_fast64_t g_starts, g_terminates, g_crashes, g_shutdowns;
static atomic_uint_fast64_t g_crash_reports, g_other_errors, g_init_fail_logs;
static atomic_uint g_term_count[MAXID];
static atomic_uint_fast64_t g_sent[MAXID]; /* casts accepted (GS_OK) per server id */
static uint64_t g_handled[MAXID];          /* written by terminate, read after runtime stop */
static int g_reason[MAXID];                /* idem */
static bool g_started[MAXID];              /* written by the starting thread, read at the end */
static atomic_uint g_next_id;

/* ---- the server ------------------------------------------------------ */

static int srv_init(gs_ctx *ctx, void *state, const void *arg)
{
    srv_state *s = state;
    const init_arg *a = arg;
    CHECK(gs_self(ctx) != GS_NOPID);
    if (a->mode == MODE_REFUSE)
        return GS_STOP;
    if (a->mode == MODE_FAIL)
        return INIT_FAIL_CODE;
    s->id = a->id;
    s->rng = stress_seed(a->id);
    return GS_OK;
}

static int srv_crash(srv_state *s)
{
    s->crashed = true;
    atomic_fetch_add(&g_crashes, 1);
    return CRASH_CODE;
}

static int srv_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    srv_state *s = state;
    s->handled++;
    switch (msg->tag) {
    case TAG_PING:
        return stress_rand(&s->rng) % 40 == 0 ? srv_crash(s) : GS_OK;
    case TAG_POKE:
        return GS_OK;
    case TAG_CRASH:
        return srv_crash(s);
    case TAG_QUIT:
        s->quit = true;
        return GS_STOP;
    default:
        CHECKF(0, "unexpected cast tag %u", (unsigned)msg->tag);
        return GS_OK;
    }
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
    CHECK(s->id < MAXID);
    unsigned before = atomic_fetch_add(&g_term_count[s->id], 1);
    CHECKF(before == 0, "terminate ran %u times for server %u", before + 1, (unsigned)s->id);
    if (s->crashed)
        CHECKF(reason == CRASH_CODE, "crashed server terminated with reason %d", reason);
    else if (s->quit)
        CHECKF(reason == GS_NORMAL, "server that returned GS_STOP got reason %d", reason);
    else
        CHECKF(reason == GS_NORMAL || reason == USER_REASON || reason == GS_SHUTDOWN,
               "unexpected terminate reason %d", reason);
    if (reason == GS_SHUTDOWN)
        atomic_fetch_add(&g_shutdowns, 1);
    g_handled[s->id] = s->handled;
    g_reason[s->id] = reason;
    atomic_fetch_add(&g_terminates, 1);
}

static const gs_server_ops srv_ops = {
    .name = "stress_lifecycle",
    .state_size = sizeof(srv_state),
    .init = srv_init,
    .handle_call = srv_call,
    .handle_cast = srv_cast,
    .terminate = srv_terminate,
};

/* ---- quiet logger that counts --------------------------------------- */

static void count_log(void *user, int level, const char *line)
{
    (void)user;
    CHECK(line != NULL);
    if (level != GS_LOG_ERROR)
        return;
    if (strstr(line, "crash report") != NULL && strstr(line, "reason -1000") != NULL) {
        atomic_fetch_add(&g_crash_reports, 1);
    } else if (strstr(line, "-1001") != NULL) {
        /* The header does not say whether a failed init is logged: allowed. */
        atomic_fetch_add(&g_init_fail_logs, 1);
    } else {
        atomic_fetch_add(&g_other_errors, 1);
        fprintf(stderr, "stress_lifecycle: unexpected error logged: %s\n", line);
    }
}

/* ---- the shared pool of live (or maybe crashed) servers ------------- */

typedef struct {
    gs_pid pid;
    uint32_t id;
} entry;

static struct {
    pthread_mutex_t mu;
    entry items[POOL_CAP];
    size_t n;
} g_pool = {PTHREAD_MUTEX_INITIALIZER, {{0, 0}}, 0};

static bool pool_put(entry e)
{
    pthread_mutex_lock(&g_pool.mu);
    bool ok = g_pool.n < POOL_CAP;
    if (ok)
        g_pool.items[g_pool.n++] = e;
    pthread_mutex_unlock(&g_pool.mu);
    return ok;
}

/* Takes (remove) or peeks at a random entry; false if the pool is empty. */
static bool pool_get(uint64_t *rng, bool take, entry *out)
{
    pthread_mutex_lock(&g_pool.mu);
    bool ok = g_pool.n > 0;
    if (ok) {
        size_t i = (size_t)(stress_rand(rng) % g_pool.n);
        *out = g_pool.items[i];
        if (take)
            g_pool.items[i] = g_pool.items[--g_pool.n];
    }
    pthread_mutex_unlock(&g_pool.mu);
    return ok;
}

/* ---- helpers used by the threads ------------------------------------- */

static gs_runtime *g_rt;

/* Casts to a server that may have died meanwhile; counts accepted casts. */
static int cast_counted(entry e, uint32_t tag)
{
    int rc = gs_cast(g_rt, e.pid, tag, NULL, 0);
    CHECK_RC2(rc, GS_OK, GS_ENOPROC);
    if (rc == GS_OK)
        atomic_fetch_add(&g_sent[e.id], 1);
    return rc;
}

static void check_dead(gs_pid pid)
{
    uint64_t v = 0;
    CHECK_RC(gs_cast(g_rt, pid, TAG_PING, NULL, 0), GS_ENOPROC);
    CHECK_RC(gs_call(g_rt, pid, TAG_GET, NULL, 0, &v, sizeof v, NULL, CALL_TIMEOUT_MS),
             GS_ENOPROC);
    CHECK_RC(gs_stop(g_rt, pid, GS_NORMAL, CALL_TIMEOUT_MS), GS_ENOPROC);
}

typedef struct {
    unsigned idx;
    pthread_barrier_t *start;
    gs_pid dead[DEAD_RING]; /* pids whose gs_stop returned GS_OK */
    unsigned ndead;
    uint64_t refused, failed, stopped, crashed, quit, pooled;
} worker_arg;

static void remember_dead(worker_arg *a, gs_pid pid)
{
    a->dead[a->ndead++ % DEAD_RING] = pid;
    check_dead(pid); /* dead right away, not eventually */
}

static void one_round(worker_arg *a, uint64_t *rng)
{
    /* Now and then, poke a pid known to be dead. */
    if (a->ndead > 0) {
        unsigned n = a->ndead < DEAD_RING ? a->ndead : DEAD_RING;
        check_dead(a->dead[stress_rand(rng) % n]);
    }
    /* Now and then, cast to or stop a pooled server of any thread. */
    uint64_t r = stress_rand(rng) % 100;
    entry e;
    if (r < 25 && pool_get(rng, false, &e)) {
        cast_counted(e, TAG_POKE);
    } else if (r < 40 && pool_get(rng, true, &e)) {
        int rc = gs_stop(g_rt, e.pid, GS_NORMAL, CALL_TIMEOUT_MS);
        CHECK_RC2(rc, GS_OK, GS_ENOPROC); /* GS_ENOPROC: it had crashed */
        if (rc == GS_OK)
            remember_dead(a, e.pid);
    }

    /* Start a server of our own. */
    init_arg ia = {atomic_fetch_add(&g_next_id, 1), MODE_OK};
    CHECK(ia.id < MAXID);
    r = stress_rand(rng) % 100;
    if (r < 8)
        ia.mode = MODE_REFUSE;
    else if (r < 12)
        ia.mode = MODE_FAIL;
    gs_pid pid = GS_NOPID;
    int rc = gs_start(g_rt, &srv_ops, &ia, &pid);
    if (ia.mode == MODE_REFUSE) {
        CHECK_RC(rc, GS_ECANCELED);
        a->refused++;
        return;
    }
    if (ia.mode == MODE_FAIL) {
        CHECK_RC(rc, INIT_FAIL_CODE);
        a->failed++;
        return;
    }
    CHECK_RC(rc, GS_OK);
    CHECK(pid != GS_NOPID);
    g_started[ia.id] = true;
    atomic_fetch_add(&g_starts, 1);
    e = (entry){pid, ia.id};

    /* A few pings, then a call: only this thread knows the pid, so unless
     * a ping crashed it the server has handled exactly our pings. */
    uint64_t pings = 0;
    bool alive = true;
    int n = (int)(stress_rand(rng) % 8);
    for (int i = 0; i < n && alive; i++) {
        if (cast_counted(e, TAG_PING) == GS_OK)
            pings++;
        else
            alive = false;
    }
    uint64_t handled = 0;
    rc = gs_call(g_rt, pid, TAG_GET, NULL, 0, &handled, sizeof handled, NULL, CALL_TIMEOUT_MS);
    CHECK_RC2(rc, GS_OK, GS_ENOPROC);
    if (rc == GS_OK)
        CHECKF(handled == pings, "server handled %llu pings, %llu sent",
               (unsigned long long)handled, (unsigned long long)pings);

    /* End it, one way or another (it may already have crashed). */
    r = stress_rand(rng) % 100;
    if (r < 30) {
        rc = gs_stop(g_rt, pid, r < 20 ? GS_NORMAL : USER_REASON, CALL_TIMEOUT_MS);
        CHECK_RC2(rc, GS_OK, GS_ENOPROC);
        if (rc == GS_OK) {
            remember_dead(a, pid);
            a->stopped++;
        }
    } else if (r < 45) {
        cast_counted(e, TAG_CRASH);
        /* The crash is queued before this call, from the same thread. */
        CHECK_RC(gs_call(g_rt, pid, TAG_GET, NULL, 0, &handled, sizeof handled, NULL,
                         CALL_TIMEOUT_MS),
                 GS_ENOPROC);
        a->crashed++;
    } else if (r < 55) {
        cast_counted(e, TAG_QUIT);
        CHECK_RC(gs_call(g_rt, pid, TAG_GET, NULL, 0, &handled, sizeof handled, NULL,
                         CALL_TIMEOUT_MS),
                 GS_ENOPROC);
        a->quit++;
    } else if (pool_put(e)) {
        a->pooled++;
    } else {
        rc = gs_stop(g_rt, pid, GS_NORMAL, CALL_TIMEOUT_MS);
        CHECK_RC2(rc, GS_OK, GS_ENOPROC);
        if (rc == GS_OK)
            remember_dead(a, pid);
    }
}

static void *worker_main(void *p)
{
    worker_arg *a = p;
    uint64_t rng = stress_seed(a->idx + 7);
    pthread_barrier_wait(a->start);
    for (int i = 0; i < ITERS; i++)
        one_round(a, &rng);
    return NULL;
}

/* ---- the caster: casts to pooled servers until told to stop ---------- */

static atomic_bool g_stop_casting;
static atomic_uint_fast64_t g_caster_casts;

static void *caster_main(void *p)
{
    (void)p;
    uint64_t rng = stress_seed(12345);
    while (!atomic_load(&g_stop_casting)) {
        entry e;
        if (!pool_get(&rng, false, &e)) {
            sched_yield();
            continue;
        }
        for (int i = 0; i < 4; i++)
            cast_counted(e, TAG_POKE);
        atomic_fetch_add(&g_caster_casts, 4);
    }
    return NULL;
}

int main(void)
{
    stress_watchdog(300);
    gs_runtime_opts opts = {.workers = 2};
    CHECK_RC(gs_runtime_start(&g_rt, &opts), GS_OK);
    CHECK_RC(gs_set_logger(g_rt, count_log, NULL), GS_OK);

    pthread_t caster;
    CHECK(pthread_create(&caster, NULL, caster_main, NULL) == 0);

    pthread_barrier_t start;
    CHECK(pthread_barrier_init(&start, NULL, NTHREADS + 1) == 0);
    static worker_arg args[NTHREADS];
    pthread_t th[NTHREADS];
    for (unsigned t = 0; t < NTHREADS; t++) {
        args[t] = (worker_arg){.idx = t, .start = &start};
        CHECK(pthread_create(&th[t], NULL, worker_main, &args[t]) == 0);
    }
    double t0 = stress_now_s();
    pthread_barrier_wait(&start);
    for (unsigned t = 0; t < NTHREADS; t++)
        CHECK(pthread_join(th[t], NULL) == 0);

    /* Let the caster fill some mailboxes (counted, not timed), then stop
     * it and join it: no thread may touch the runtime once it is freed. */
    uint64_t mark = atomic_load(&g_caster_casts) + 2000;
    while (g_pool.n > 0 && atomic_load(&g_caster_casts) < mark)
        sched_yield();
    atomic_store(&g_stop_casting, true);
    CHECK(pthread_join(caster, NULL) == 0);
    size_t alive_in_pool = g_pool.n;
    CHECK_RC(gs_runtime_stop(g_rt), GS_OK);
    g_rt = NULL;
    double t1 = stress_now_s();

    uint64_t starts = atomic_load(&g_starts), terms = atomic_load(&g_terminates);
    CHECKF(terms == starts, "%llu servers started, terminate ran %llu times",
           (unsigned long long)starts, (unsigned long long)terms);
    unsigned ids = atomic_load(&g_next_id);
    uint64_t shutdown_casts = 0;
    for (unsigned id = 0; id < ids; id++) {
        unsigned tc = atomic_load(&g_term_count[id]);
        CHECKF(tc == (g_started[id] ? 1u : 0u), "server %u (started: %d) terminated %u times",
               id, (int)g_started[id], tc);
        if (g_started[id] && g_reason[id] == GS_SHUTDOWN) {
            uint64_t sent = atomic_load(&g_sent[id]);
            CHECKF(g_handled[id] == sent,
                   "server %u was shut down after handling %llu of its %llu casts", id,
                   (unsigned long long)g_handled[id], (unsigned long long)sent);
            shutdown_casts += sent;
        }
    }
    uint64_t crashes = atomic_load(&g_crashes), reports = atomic_load(&g_crash_reports);
    CHECKF(reports == crashes, "%llu crashes, %llu crash reports logged",
           (unsigned long long)crashes, (unsigned long long)reports);
    CHECK(atomic_load(&g_other_errors) == 0);

    uint64_t refused = 0, failed = 0, stopped = 0, quit = 0, pooled = 0;
    for (unsigned t = 0; t < NTHREADS; t++) {
        refused += args[t].refused;
        failed += args[t].failed;
        stopped += args[t].stopped;
        quit += args[t].quit;
        pooled += args[t].pooled;
    }
    CHECK(starts + refused + failed == ids);
    printf("stress_lifecycle: OK: %llu servers started (%llu refused, %llu failed init), "
           "%llu crashes, %llu stopped, %llu quit, %llu pooled, %zu left in the pool and %llu "
           "shut down by gs_runtime_stop after %llu casts, in %.2f s\n",
           (unsigned long long)starts, (unsigned long long)refused, (unsigned long long)failed,
           (unsigned long long)crashes, (unsigned long long)stopped, (unsigned long long)quit,
           (unsigned long long)pooled, alive_in_pool,
           (unsigned long long)atomic_load(&g_shutdowns), (unsigned long long)shutdown_casts,
           t1 - t0);
    return 0;
}
