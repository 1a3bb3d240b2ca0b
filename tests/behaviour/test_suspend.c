/* Calls from inside callbacks suspend the calling server, not its worker. */
#include "common.h"

#include <unistd.h>

enum { GO = 1, CALL_NEXT = 2, DONE = 3, HOLD = 4, RELEASE = 5, NOTE = 6, CRASH = 7, ECHO = 8, PING = 9 };

/* ---- chains: server i's handle_call calls server i+1 ----------------- */

typedef struct link_state {
    gs_pid next;       /* GS_NOPID at the tail */
    gs_pid collector;  /* heads report here */
} link_state;

typedef struct link_arg {
    gs_pid next, collector;
} link_arg;

static int link_init(gs_ctx *ctx, void *state, const void *arg)
{
    const link_arg *a = arg;
    link_state *s = state;
    s->next = a->next;
    s->collector = a->collector;
    return GS_OK;
}

static int link_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    link_state *s = state;
    int64_t depth = 1;
    if (s->next != GS_NOPID) {
        int64_t below = 0;
        int rc = gs_call(gs_ctx_runtime(ctx), s->next, CALL_NEXT, NULL, 0, &below, sizeof below, NULL, 30000);
        depth = rc == GS_OK ? below + 1 : -1000;
    }
    return gs_reply(gs_ctx_runtime(ctx), from, &depth, sizeof depth);
}

static int link_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    link_state *s = state;
    if (m->tag == GO) { /* a head: run the chain, report the depth */
        int64_t depth = 0;
        int rc = gs_call(gs_ctx_runtime(ctx), s->next, CALL_NEXT, NULL, 0, &depth, sizeof depth, NULL, 30000);
        int64_t report = rc == GS_OK ? depth + 1 : -1;
        gs_cast(gs_ctx_runtime(ctx), s->collector, DONE, &report, sizeof report);
    }
    return GS_OK;
}

static const gs_server_ops link_ops = {
    .name = "chain-link", .state_size = sizeof(link_state), .init = link_init,
    .handle_call = link_call, .handle_cast = link_cast};

static atomic_int chains_done, chains_bad;

static int collector_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    int64_t depth;
    memcpy(&depth, m->data, sizeof depth);
    if (depth != 10)
        atomic_fetch_add(&chains_bad, 1);
    atomic_fetch_add(&chains_done, 1);
    return GS_OK;
}

static const gs_server_ops collector_ops = {.name = "chain-collector", .handle_cast = collector_cast};

Test(suspend, thousand_chains_of_depth_ten_on_two_workers, .timeout = 120)
{
    atomic_store(&chains_done, 0);
    atomic_store(&chains_bad, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid collector = start_ok(rt, &collector_ops, NULL);
    enum { CHAINS = 1000, DEPTH = 10 };
    static gs_pid heads[CHAINS];
    for (int c = 0; c < CHAINS; c++) {
        gs_pid next = GS_NOPID;
        for (int d = DEPTH - 1; d >= 0; d--) {
            link_arg a = {next, collector};
            next = start_ok(rt, &link_ops, &a);
        }
        heads[c] = next;
    }
    gs_runtime_stats before;
    cr_assert_eq(gs_runtime_stats_get(rt, &before), GS_OK);
    for (int c = 0; c < CHAINS; c++) /* all in flight at once */
        cr_assert_eq(gs_cast(rt, heads[c], GO, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&chains_done, CHAINS, 100000), "%d of %d chains done", atomic_load(&chains_done),
              CHAINS);
    cr_assert_eq(atomic_load(&chains_bad), 0, "chains with a wrong depth");
    gs_runtime_stats after;
    cr_assert_eq(gs_runtime_stats_get(rt, &after), GS_OK);
    cr_assert_eq(after.calls_blocked, before.calls_blocked, "a worker blocked on a call");
    cr_assert_geq(after.calls_suspended - before.calls_suspended, (uint64_t)CHAINS * (DEPTH - 1));
    cr_assert_eq(after.calls_resumed - before.calls_resumed, after.calls_suspended - before.calls_suspended);
    rt_free(rt);
}

/* ---- a held callee: replies only when told ----------------------------- */

#define MAXHELD 128
typedef struct holder_state {
    gs_from held[MAXHELD];
    int nheld;
} holder_state;

static int holder_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    holder_state *s = state;
    if (m->tag == ECHO)
        return gs_reply(gs_ctx_runtime(ctx), from, m->data, m->len);
    if (s->nheld < MAXHELD)
        s->held[s->nheld++] = from;
    return GS_NOREPLY;
}

static atomic_int late_reply_rc = 1;

static int holder_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    holder_state *s = state;
    if (m->tag == RELEASE) {
        int64_t v = 77;
        for (int i = 0; i < s->nheld; i++)
            atomic_store(&late_reply_rc, gs_reply(gs_ctx_runtime(ctx), s->held[i], &v, sizeof v));
        s->nheld = 0;
    } else if (m->tag == CRASH) {
        return GS_EAGAIN;
    }
    return GS_OK;
}

static const gs_server_ops holder_ops = {
    .name = "holder", .state_size = sizeof(holder_state), .handle_call = holder_call, .handle_cast = holder_cast};

/* The caller records what happens to it, in order. */
#define MAXEV 256
static int events[MAXEV];
static atomic_int nevents;
static atomic_int call_rc;
static _Atomic int64_t call_value;
static _Atomic gs_pid callee;
static atomic_int call_timeout_ms;

static void event(int e)
{
    int i = atomic_fetch_add(&nevents, 1);
    if (i < MAXEV)
        events[i] = e;
}

static int caller_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == GO) {
        int64_t v = 0;
        event(-1); /* call starts */
        int rc = gs_call(gs_ctx_runtime(ctx), atomic_load(&callee), HOLD, NULL, 0, &v, sizeof v, NULL,
                         atomic_load(&call_timeout_ms));
        atomic_store(&call_value, v);
        atomic_store(&call_rc, rc);
        event(-2); /* call returned */
    } else if (m->tag == NOTE) {
        int64_t k;
        memcpy(&k, m->data, sizeof k);
        event((int)k);
    }
    return GS_OK;
}

static int caller_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    int64_t v = -5;
    int rc = gs_call(gs_ctx_runtime(ctx), atomic_load(&callee), ECHO, m->data, m->len, &v, sizeof v, NULL, 5000);
    atomic_store(&call_rc, rc);
    return gs_reply(gs_ctx_runtime(ctx), from, &v, sizeof v);
}

static const gs_server_ops caller_ops = {.name = "caller", .handle_cast = caller_cast, .handle_call = caller_call};

static void reset_events(int timeout_ms)
{
    atomic_store(&nevents, 0);
    atomic_store(&call_rc, 1);
    atomic_store(&call_value, 0);
    atomic_store(&late_reply_rc, 1);
    atomic_store(&call_timeout_ms, timeout_ms);
}

Test(suspend, suspended_server_queues_messages_and_handles_them_in_order_after, .timeout = 30)
{
    reset_events(20000);
    gs_runtime *rt = rt_new(2);
    gs_pid h = start_ok(rt, &holder_ops, NULL);
    atomic_store(&callee, h);
    gs_pid c = start_ok(rt, &caller_ops, NULL);
    cr_assert_eq(gs_cast(rt, c, GO, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&nevents, 1, 5000));
    sleep_ms(50); /* the caller is suspended in its call now */
    for (int64_t k = 1; k <= 20; k++)
        cr_assert_eq(gs_cast(rt, c, NOTE, &k, sizeof k), GS_OK);
    sleep_ms(100);
    cr_assert_eq(atomic_load(&nevents), 1, "a message was handled while the callback was suspended");
    cr_assert_eq(gs_cast(rt, h, RELEASE, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&nevents, 22, 5000));
    cr_assert_eq(atomic_load(&call_rc), GS_OK);
    cr_assert_eq(atomic_load(&call_value), 77);
    cr_assert_eq(events[0], -1);
    cr_assert_eq(events[1], -2, "the call's return comes before the queued messages");
    for (int k = 1; k <= 20; k++)
        cr_assert_eq(events[k + 1], k, "queued message %d out of order", k);
    rt_free(rt);
}

Test(suspend, callee_crash_resumes_caller_with_enoproc, .timeout = 30)
{
    reset_events(20000);
    gs_runtime *rt = rt_new(2);
    gs_pid h = start_ok(rt, &holder_ops, NULL);
    atomic_store(&callee, h);
    gs_pid c = start_ok(rt, &caller_ops, NULL);
    cr_assert_eq(gs_cast(rt, c, GO, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&nevents, 1, 5000));
    sleep_ms(30);
    int64_t t0 = now_ns();
    cr_assert_eq(gs_cast(rt, h, CRASH, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&nevents, 2, 5000));
    cr_assert_eq(atomic_load(&call_rc), GS_ENOPROC);
    cr_assert_lt(now_ns() - t0, 5000 * 1000000LL, "not at once");
    /* The caller still answers. */
    int64_t v = 0, in = 5;
    gs_pid h2 = start_ok(rt, &holder_ops, NULL);
    atomic_store(&callee, h2);
    cr_assert_eq(gs_call(rt, c, ECHO, &in, sizeof in, &v, sizeof v, NULL, 5000), GS_OK);
    cr_assert_eq(v, 5);
    rt_free(rt);
}

Test(suspend, timed_out_call_never_sees_the_late_reply, .timeout = 30)
{
    reset_events(50);
    gs_runtime *rt = rt_new(2);
    gs_pid h = start_ok(rt, &holder_ops, NULL);
    atomic_store(&callee, h);
    gs_pid c = start_ok(rt, &caller_ops, NULL);
    int64_t t0 = now_ns();
    cr_assert_eq(gs_cast(rt, c, GO, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&nevents, 2, 5000));
    cr_assert_eq(atomic_load(&call_rc), GS_ETIMEDOUT);
    cr_assert_geq(now_ns() - t0, 50 * 1000000LL, "timed out early");
    /* The late reply goes nowhere... */
    cr_assert_eq(gs_cast(rt, h, RELEASE, NULL, 0), GS_OK);
    sleep_ms(50);
    cr_assert_eq(atomic_load(&late_reply_rc), GS_ENOENT);
    /* ...and the next call from the same server gets its own reply. */
    int64_t v = 0, in = 123;
    cr_assert_eq(gs_call(rt, c, ECHO, &in, sizeof in, &v, sizeof v, NULL, 5000), GS_OK);
    cr_assert_eq(v, 123);
    cr_assert_eq(atomic_load(&call_rc), GS_OK);
    rt_free(rt);
}

/* ---- a cycle: A calls B while B calls A -------------------------------- */

static _Atomic gs_pid peer_of[2];
static atomic_int cycle_rc[2];
static atomic_int cycle_done;

static atomic_int cycle_arrived;

static int cyc_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    int me = (int)*(const int64_t *)m->data;
    int64_t v;
    /* Both servers inside their callbacks before either calls: a real
     * cycle (otherwise one call may finish before the other starts). */
    atomic_fetch_add(&cycle_arrived, 1);
    int64_t until = now_ms() + 5000;
    while (atomic_load(&cycle_arrived) < 2 && now_ms() < until)
        sleep_ms(1);
    int rc = gs_call(gs_ctx_runtime(ctx), atomic_load(&peer_of[me]), ECHO, m->data, m->len, &v, sizeof v, NULL,
                     200);
    atomic_store(&cycle_rc[me], rc);
    atomic_fetch_add(&cycle_done, 1);
    return GS_OK;
}

static int cyc_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    return gs_reply(gs_ctx_runtime(ctx), from, m->data, m->len);
}

static const gs_server_ops cyc_ops = {.name = "cycle", .handle_cast = cyc_cast, .handle_call = cyc_call};

Test(suspend, call_cycle_resolves_by_timeout, .timeout = 30)
{
    atomic_store(&cycle_done, 0);
    atomic_store(&cycle_arrived, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &cyc_ops, NULL), b = start_ok(rt, &cyc_ops, NULL);
    atomic_store(&peer_of[0], b);
    atomic_store(&peer_of[1], a);
    int64_t ia = 0, ib = 1;
    cr_assert_eq(gs_cast(rt, a, GO, &ia, sizeof ia), GS_OK);
    cr_assert_eq(gs_cast(rt, b, GO, &ib, sizeof ib), GS_OK);
    cr_assert(wait_int_eq(&cycle_done, 2, 5000));
    cr_assert_eq(atomic_load(&cycle_arrived), 2, "the two callbacks never ran at the same time");
    cr_assert(atomic_load(&cycle_rc[0]) == GS_ETIMEDOUT || atomic_load(&cycle_rc[1]) == GS_ETIMEDOUT,
              "a call cycle without a timeout: %d, %d", atomic_load(&cycle_rc[0]), atomic_load(&cycle_rc[1]));
    int64_t v = 0, in = 9;
    int rc = gs_call(rt, a, ECHO, &in, sizeof in, &v, sizeof v, NULL, 5000);
    cr_assert_eq(rc, GS_OK, "A after the cycle: %s", gs_strerror(rc));
    rc = gs_call(rt, b, ECHO, &in, sizeof in, &v, sizeof v, NULL, 5000);
    cr_assert_eq(rc, GS_OK, "B after the cycle: %s", gs_strerror(rc));
    rt_free(rt);
}

/* ---- many suspended at once --------------------------------------------- */

static atomic_int waiters_back;

static int waiter_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    gs_pid sink;
    memcpy(&sink, m->data, sizeof sink);
    int64_t v = 0;
    if (gs_call(gs_ctx_runtime(ctx), sink, HOLD, NULL, 0, &v, sizeof v, NULL, GS_INFINITY) == GS_OK && v == 77)
        atomic_fetch_add(&waiters_back, 1);
    return GS_OK;
}

static const gs_server_ops waiter_ops = {.name = "waiter", .handle_cast = waiter_cast};

typedef struct sink_state {
    gs_from *held;
    int n, cap;
} sink_state;

static int sink_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    sink_state *s = state;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->held = realloc(s->held, (size_t)s->cap * sizeof(gs_from));
    }
    s->held[s->n++] = from;
    return GS_NOREPLY;
}

static int sink_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    sink_state *s = state;
    int64_t v = 77;
    for (int i = 0; i < s->n; i++)
        gs_reply(gs_ctx_runtime(ctx), s->held[i], &v, sizeof v);
    s->n = 0;
    return GS_OK;
}

static void sink_terminate(gs_ctx *ctx, void *state, int reason)
{
    free(((sink_state *)state)->held);
}

static const gs_server_ops sink_ops = {.name = "sink", .state_size = sizeof(sink_state),
                                       .handle_call = sink_call, .handle_cast = sink_cast,
                                       .terminate = sink_terminate};

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* 100,000 under a plain build; fewer under ASan, whose shadow memory and
 * redzones would make the figure meaningless. */
#if defined(__SANITIZE_ADDRESS__)
#define MANY_SUSPENDED 20000
#else
#define MANY_SUSPENDED 100000
#endif

Test(suspend, many_servers_suspended_at_once_stay_within_the_stack_bound, .timeout = 180)
{
    atomic_store(&waiters_back, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid sink = start_ok(rt, &sink_ops, NULL);
    static gs_pid w[MANY_SUSPENDED];
    for (int i = 0; i < MANY_SUSPENDED; i++)
        w[i] = start_ok(rt, &waiter_ops, NULL);
    long rss0 = rss_kb();
    for (int i = 0; i < MANY_SUSPENDED; i++)
        cr_assert_eq(gs_cast(rt, w[i], GO, &sink, sizeof sink), GS_OK);
    gs_runtime_stats st;
    int64_t t0 = now_ms();
    do {
        sleep_ms(20);
        cr_assert_eq(gs_runtime_stats_get(rt, &st), GS_OK);
    } while (st.calls_suspended < MANY_SUSPENDED && now_ms() - t0 < 60000);
    cr_assert_geq(st.calls_suspended, MANY_SUSPENDED);
    cr_assert_geq(st.stacks_in_use, MANY_SUSPENDED);
    long per_stack = (rss_kb() - rss0) * 1024 / MANY_SUSPENDED;
    /* The documented bound: what callbacks touch (a few KiB), far below the
     * 64 KiB of address space each stack reserves. */
    cr_assert_lt(per_stack, 32 * 1024, "%ld bytes of RSS per suspended server", per_stack);
    cr_assert_eq(st.calls_blocked, 0);
    cr_assert_eq(gs_cast(rt, sink, RELEASE, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&waiters_back, MANY_SUSPENDED, 60000), "%d resumed", atomic_load(&waiters_back));
    cr_assert_eq(gs_runtime_stats_get(rt, &st), GS_OK);
    cr_assert_leq(st.stacks_in_use, st.workers + 1, "stacks not returned: %lu", (unsigned long)st.stacks_in_use);
    rt_free(rt);
}

Test(suspend, stop_from_a_callback_suspends_too, .timeout = 30)
{
    reset_events(20000);
    gs_runtime *rt = rt_new(1); /* one worker: a blocking stop would deadlock */
    gs_pid h = start_ok(rt, &holder_ops, NULL);
    atomic_store(&callee, h);
    gs_pid c = start_ok(rt, &caller_ops, NULL);
    int64_t v = 0, in = 4;
    cr_assert_eq(gs_call(rt, c, ECHO, &in, sizeof in, &v, sizeof v, NULL, 5000), GS_OK, "one worker");
    cr_assert_eq(v, 4);
    gs_runtime_stats st;
    cr_assert_eq(gs_runtime_stats_get(rt, &st), GS_OK);
    cr_assert_eq(st.calls_blocked, 0);
    cr_assert_geq(st.calls_suspended, 1);
    rt_free(rt);
}

/* ---- every worker stuck in a long callback ------------------------------- */

/* A caller's call times out even when no worker is free to look at its
 * deferred timeout: one worker sleeps in the callee's handle_call, the
 * other in a blocker's cast. The callee replies only after its sleep, so
 * the call must end in GS_ETIMEDOUT, not in the reply. */

enum { STUCK_MS = 400, STUCK_TIMEOUT_MS = 50 };

static atomic_int stuck_rc, stuck_done, stuck_in_callee;
static _Atomic int64_t stuck_took_ms;
static _Atomic gs_pid stuck_callee, stuck_blocker;

static int sleeper_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    atomic_store(&stuck_in_callee, 1);
    sleep_ms(STUCK_MS); /* blocks its worker on purpose */
    int64_t v = 1;
    return gs_reply(gs_ctx_runtime(ctx), from, &v, sizeof v);
}

static int sleeper_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    sleep_ms(STUCK_MS); /* blocks the other worker */
    return GS_OK;
}

static const gs_server_ops sleeper_ops = {
    .name = "sleeper", .handle_call = sleeper_call, .handle_cast = sleeper_cast};

static int stuck_caller_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    gs_runtime *rt = gs_ctx_runtime(ctx);
    int64_t v = 0, t0 = now_ms();
    int rc = gs_call(rt, atomic_load(&stuck_callee), ECHO, NULL, 0, &v, sizeof v, NULL, STUCK_TIMEOUT_MS);
    atomic_store(&stuck_took_ms, now_ms() - t0);
    atomic_store(&stuck_rc, rc);
    atomic_store(&stuck_done, 1);
    return GS_OK;
}

static const gs_server_ops stuck_caller_ops = {.name = "stuck-caller", .handle_cast = stuck_caller_cast};

Test(suspend, call_times_out_while_every_worker_is_stuck, .timeout = 30)
{
    atomic_store(&stuck_rc, 12345);
    atomic_store(&stuck_done, 0);
    atomic_store(&stuck_in_callee, 0);
    gs_runtime *rt = rt_new(2);
    atomic_store(&stuck_callee, start_ok(rt, &sleeper_ops, NULL));
    atomic_store(&stuck_blocker, start_ok(rt, &sleeper_ops, NULL));
    gs_pid c = start_ok(rt, &stuck_caller_ops, NULL);
    cr_assert_eq(gs_cast(rt, c, GO, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&stuck_in_callee, 1, 5000), "the callee never got the call");
    /* The caller is suspended, one worker sleeps in the callee: put the
     * other one to sleep too. */
    cr_assert_eq(gs_cast(rt, atomic_load(&stuck_blocker), GO, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&stuck_done, 1, 5000));
    cr_assert_eq(atomic_load(&stuck_rc), GS_ETIMEDOUT, "the call ended with %s after %lld ms",
                 gs_strerror(atomic_load(&stuck_rc)), (long long)atomic_load(&stuck_took_ms));
    rt_free(rt);
}

/* ---- many suspended calls time out together ---------------------------
 * The timer thread fires their timeouts in one pass and hands the
 * resumed callers to the workers in batches (run_batch in scheduler.c).
 * 300 servers call a server that never answers, with a 30 ms timeout,
 * all at once; five rounds: every call ends with GS_ETIMEDOUT, none
 * early, and every caller is resumed. */
#define TOGETHER 300
static atomic_int together_done, together_bad_rc, together_early;
static _Atomic gs_pid together_sink;

static int never_answers(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    return GS_NOREPLY; /* and forgets `from`: the caller's timeout ends the call */
}

static const gs_server_ops never_answers_ops = {.name = "never-answers", .handle_call = never_answers};

static int together_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    int64_t v = 0, t0 = now_ns();
    int rc = gs_call(gs_ctx_runtime(ctx), atomic_load(&together_sink), HOLD, NULL, 0, &v, sizeof v, NULL, 30);
    if (rc != GS_ETIMEDOUT)
        atomic_fetch_add(&together_bad_rc, 1);
    if (now_ns() - t0 < 30 * 1000000LL)
        atomic_fetch_add(&together_early, 1);
    atomic_fetch_add(&together_done, 1);
    return GS_OK;
}

static const gs_server_ops together_ops = {.name = "together", .handle_cast = together_cast};

Test(suspend, many_suspended_calls_time_out_together, .timeout = 60)
{
    gs_runtime *rt = rt_new(2);
    atomic_store(&together_sink, start_ok(rt, &never_answers_ops, NULL));
    static gs_pid pids[TOGETHER];
    for (int i = 0; i < TOGETHER; i++)
        pids[i] = start_ok(rt, &together_ops, NULL);
    for (int round = 0; round < 5; round++) {
        atomic_store(&together_done, 0);
        atomic_store(&together_bad_rc, 0);
        atomic_store(&together_early, 0);
        sleep_ms(10 * round); /* the workers park, or not */
        for (int i = 0; i < TOGETHER; i++)
            cr_assert_eq(gs_cast(rt, pids[i], GO, NULL, 0), GS_OK);
        cr_assert(wait_int_eq(&together_done, TOGETHER, 10000), "round %d: %d of %d calls ended", round,
                  atomic_load(&together_done), TOGETHER);
        cr_assert_eq(atomic_load(&together_bad_rc), 0, "round %d: a call did not time out", round);
        cr_assert_eq(atomic_load(&together_early), 0, "round %d: a call timed out early", round);
    }
    rt_free(rt);
}

/* ---- a slow call's timeout timer goes when the call ends -------------- */

/* The keeper keeps every call unanswered until told (RELEASE). */
#define KEPT_CALLS 200
typedef struct keeper_state {
    gs_from from[KEPT_CALLS];
    int n;
} keeper_state;

static atomic_int kept_now;

static int keeper_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    keeper_state *s = state;
    if (s->n == KEPT_CALLS)
        return gs_reply(gs_ctx_runtime(ctx), from, NULL, 0);
    s->from[s->n++] = from;
    atomic_store(&kept_now, s->n);
    return GS_NOREPLY;
}

static int keeper_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    keeper_state *s = state;
    if (m->tag == RELEASE) {
        while (s->n > 0)
            gs_reply(gs_ctx_runtime(ctx), s->from[--s->n], NULL, 0);
        atomic_store(&kept_now, 0);
    }
    return GS_OK;
}

static const gs_server_ops keeper_ops = {
    .name = "keeper", .state_size = sizeof(keeper_state), .handle_call = keeper_call, .handle_cast = keeper_cast};

static _Atomic gs_pid keeper;
static atomic_int slow_calls_ok, slow_calls_bad;

/* One call with an hour's timeout, answered when the keeper is released. */
static int slow_caller_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    int rc = gs_call(gs_ctx_runtime(ctx), atomic_load(&keeper), PING, NULL, 0, NULL, 0, NULL, 3600 * 1000);
    atomic_fetch_add(rc == GS_OK ? &slow_calls_ok : &slow_calls_bad, 1);
    return GS_OK;
}

static const gs_server_ops slow_caller_ops = {.name = "slow_caller", .handle_cast = slow_caller_cast};

static int ignore_info(gs_ctx *ctx, void *state, const gs_msg *m) { return GS_OK; }
static const gs_server_ops wake_sink_ops = {.name = "wake_sink", .handle_info = ignore_info};


/* An in-server call that waits long enough has its timeout armed on the
 * wheel (scheduler.c, deferral). Answered long before its deadline, it
 * must not leave the timer record behind until then: with long timeouts
 * such records pile up, and count against GS_TIMERS_MAX. */
Test(suspend, answered_slow_calls_give_their_timeout_records_back, .timeout = 60)
{
    gs_runtime *rt = rt_new(2);
    atomic_store(&kept_now, 0);
    atomic_store(&keeper, start_ok(rt, &keeper_ops, NULL));
    gs_pid wake_sink = start_ok(rt, &wake_sink_ops, NULL);
    for (int i = 0; i < KEPT_CALLS; i++)
        cr_assert_eq(gs_cast(rt, start_ok(rt, &slow_caller_ops, NULL), GO, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&kept_now, KEPT_CALLS, 20000), "the keeper holds %d calls", atomic_load(&kept_now));
    /* The timeouts reach the wheel once their calls have waited a
     * millisecond or so (idle workers arm them all). */
    int64_t until = now_ms() + 10000;
    uint64_t armed = 0;
    while ((armed = timers_held_after_a_wake(rt, wake_sink)) < KEPT_CALLS && now_ms() < until)
        ;
    cr_assert_geq(armed, KEPT_CALLS, "only %llu call timeouts reached the wheel", (unsigned long long)armed);

    cr_assert_eq(gs_cast(rt, atomic_load(&keeper), RELEASE, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&slow_calls_ok, KEPT_CALLS, 20000), "%d calls answered, %d failed",
              atomic_load(&slow_calls_ok), atomic_load(&slow_calls_bad));
    uint64_t left = armed;
    until = now_ms() + 10000;
    while ((left = timers_held_after_a_wake(rt, wake_sink)) > 0 && now_ms() < until)
        ;
    cr_assert_eq(left, 0, "%llu timer records still held after %d answered calls (an hour's timeout each)",
                 (unsigned long long)left, KEPT_CALLS);
    rt_free(rt);
}
