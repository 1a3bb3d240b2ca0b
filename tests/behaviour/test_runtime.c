/* test_runtime.c - gs_runtime_start / gs_runtime_stop and bad input. */
#include "common.h"

enum {
    C_COUNT = 1,
    C_SLOW = 2,          /* sleep 200 ms then count */
    K_GET = 10,
    K_RUNTIME_STOP = 11, /* call: gs_runtime_stop from inside, reply status */
    K_REPLY_GARBAGE = 12, /* call: gs_reply with made-up froms, then a real reply */
    K_REPLY_HUGE = 13,   /* call: gs_reply with len > GS_MSG_MAX, then a real reply */
};

#define MAXS 128

static atomic_int g_term_calls;
static atomic_int g_term_shutdown;
static atomic_int g_term_by_index[MAXS];
static atomic_long g_term_count_seen[MAXS];
static atomic_int g_start_in_terminate_rc;
static atomic_int g_try_start_in_terminate;
static atomic_int g_garbage_rc[4];
static atomic_int g_huge_rc;

typedef struct {
    int index;
    long count;
} rs_state;

static void reset(void)
{
    atomic_store(&g_term_calls, 0);
    atomic_store(&g_term_shutdown, 0);
    for (int i = 0; i < MAXS; i++) {
        atomic_store(&g_term_by_index[i], 0);
        atomic_store(&g_term_count_seen[i], -1);
    }
    atomic_store(&g_start_in_terminate_rc, 12345);
    atomic_store(&g_try_start_in_terminate, 0);
    for (int i = 0; i < 4; i++)
        atomic_store(&g_garbage_rc[i], 12345);
    atomic_store(&g_huge_rc, 12345);
}

static int rs_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    rs_state *s = state;
    s->index = arg ? *(const int *)arg : -1;
    return GS_OK;
}

static int rs_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    rs_state *s = state;
    if (msg->tag == C_SLOW)
        sleep_ms(200);
    s->count++;
    return GS_OK;
}

static const gs_server_ops plain_ops; /* forward: used by terminate */

static int rs_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    (void)msg;
    rs_state *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    int64_t out = s->count;
    if (msg->tag == K_RUNTIME_STOP) {
        out = gs_runtime_stop(rt);
    } else if (msg->tag == K_REPLY_GARBAGE) {
        gs_from g1 = {{12345, 678}};
        gs_from g2 = {{UINT64_MAX, UINT64_MAX}};
        gs_from g3 = {{0, 0}};
        gs_from g4 = {{from.w[0] ^ 0x5555555555555555ull, from.w[1] ^ 0xAAAAAAAAAAAAAAAAull}};
        atomic_store(&g_garbage_rc[0], gs_reply(rt, g1, "g", 1));
        atomic_store(&g_garbage_rc[1], gs_reply(rt, g2, "g", 1));
        atomic_store(&g_garbage_rc[2], gs_reply(rt, g3, NULL, 0));
        atomic_store(&g_garbage_rc[3], gs_reply(rt, g4, "g", 1));
    } else if (msg->tag == K_REPLY_HUGE) {
        char small[8] = "small";
        atomic_store(&g_huge_rc, gs_reply(rt, from, small, GS_MSG_MAX + 1));
    }
    gs_reply(rt, from, &out, sizeof out);
    return GS_OK;
}

static void rs_terminate(gs_ctx *ctx, void *state, int reason)
{
    rs_state *s = state;
    if (reason == GS_SHUTDOWN)
        atomic_fetch_add(&g_term_shutdown, 1);
    if (s->index >= 0 && s->index < MAXS) {
        atomic_fetch_add(&g_term_by_index[s->index], 1);
        atomic_store(&g_term_count_seen[s->index], s->count);
    }
    if (atomic_exchange(&g_try_start_in_terminate, 0)) {
        gs_pid p = GS_NOPID;
        atomic_store(&g_start_in_terminate_rc, gs_start(gs_ctx_runtime(ctx), &plain_ops, NULL, &p));
    }
    atomic_fetch_add(&g_term_calls, 1);
}

static const gs_server_ops plain_ops = {
    .name = "runtime-test",
    .state_size = sizeof(rs_state),
    .init = rs_init,
    .handle_cast = rs_cast,
    .handle_call = rs_call,
    .terminate = rs_terminate,
};

static int IDX[MAXS];

static void fill_idx(void)
{
    for (int i = 0; i < MAXS; i++)
        IDX[i] = i;
}

/* ------------------------------------------------------------------ */

Test(runtime, stop_terminates_every_live_server_with_shutdown, .timeout = 20)
{
    reset();
    fill_idx();
    gs_runtime *rt = rt_new(2);
    enum { N = 100, STOPPED = 20 };
    gs_pid pids[N];
    for (int i = 0; i < N; i++)
        pids[i] = start_ok(rt, &plain_ops, &IDX[i]);
    for (int i = 0; i < STOPPED; i++)
        stop_ok(rt, pids[i]);
    cr_assert_eq(atomic_load(&g_term_calls), STOPPED);
    cr_assert_eq(atomic_load(&g_term_shutdown), 0);
    cr_assert_eq(gs_runtime_stop(rt), GS_OK);
    cr_assert_eq(atomic_load(&g_term_shutdown), N - STOPPED, "%d servers got GS_SHUTDOWN, want %d",
                 atomic_load(&g_term_shutdown), N - STOPPED);
    cr_assert_eq(atomic_load(&g_term_calls), N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&g_term_by_index[i]), 1, "server %d terminated %d times", i,
                     atomic_load(&g_term_by_index[i]));
}

Test(runtime, stop_handles_queued_messages_first, .timeout = 20)
{
    reset();
    fill_idx();
    gs_runtime *rt = rt_new(2);
    enum { N = 10, M = 300 };
    gs_pid pids[N];
    for (int i = 0; i < N; i++)
        pids[i] = start_ok(rt, &plain_ops, &IDX[i]);
    cr_assert_eq(gs_cast(rt, pids[0], C_SLOW, NULL, 0), GS_OK);
    for (int j = 0; j < M; j++)
        for (int i = 0; i < N; i++)
            cr_assert_eq(gs_cast(rt, pids[i], C_COUNT, NULL, 0), GS_OK);
    cr_assert_eq(gs_runtime_stop(rt), GS_OK);
    for (int i = 0; i < N; i++) {
        long want = M + (i == 0 ? 1 : 0);
        cr_assert_eq(atomic_load(&g_term_count_seen[i]), want,
                     "server %d handled %ld of %ld queued casts before terminate", i,
                     atomic_load(&g_term_count_seen[i]), want);
    }
    cr_assert_eq(atomic_load(&g_term_shutdown), N);
}

Test(runtime, start_during_runtime_stop_gives_eshutdown, .timeout = 15)
{
    reset();
    fill_idx();
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &plain_ops, &IDX[0]);
    (void)pid;
    atomic_store(&g_try_start_in_terminate, 1);
    cr_assert_eq(gs_runtime_stop(rt), GS_OK);
    cr_assert_eq(atomic_load(&g_start_in_terminate_rc), GS_ESHUTDOWN,
                 "gs_start from terminate during gs_runtime_stop gave %d",
                 atomic_load(&g_start_in_terminate_rc));
    cr_assert_eq(atomic_load(&g_term_calls), 1);
}

Test(runtime, stop_from_inside_a_callback_gives_edeadlk, .timeout = 15)
{
    reset();
    fill_idx();
    gs_runtime *rt = rt_new(2);
    gs_pid pid = start_ok(rt, &plain_ops, &IDX[0]);
    int64_t rc = 0;
    cr_assert_eq(call_i64(rt, pid, K_RUNTIME_STOP, 0, &rc, 5000), GS_OK);
    cr_assert_eq(rc, GS_EDEADLK, "gs_runtime_stop inside a callback gave %" PRId64, rc);
    /* and it did nothing */
    cr_assert_eq(atomic_load(&g_term_calls), 0);
    int64_t v;
    cr_assert_eq(call_i64(rt, pid, K_GET, 0, &v, 5000), GS_OK);
    gs_pid p2 = start_ok(rt, &plain_ops, &IDX[1]);
    stop_ok(rt, p2);
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_term_calls), 2);
}

Test(runtime, stop_null_is_einval, .timeout = 10)
{
    cr_assert_eq(gs_runtime_stop(NULL), GS_EINVAL);
}

Test(runtime, start_arguments, .timeout = 20)
{
    cr_assert_eq(gs_runtime_start(NULL, NULL), GS_EINVAL);
    gs_runtime_opts o = {.workers = 1};
    cr_assert_eq(gs_runtime_start(NULL, &o), GS_EINVAL);
    gs_runtime *rt = NULL;
    o.workers = GS_MAX_WORKERS + 1;
    cr_assert_eq(gs_runtime_start(&rt, &o), GS_EINVAL, "more than GS_MAX_WORKERS workers");
    o.workers = 1000000;
    cr_assert_eq(gs_runtime_start(&rt, &o), GS_EINVAL);
    /* NULL opts and workers 0 mean one per CPU */
    rt = NULL;
    cr_assert_eq(gs_runtime_start(&rt, NULL), GS_OK);
    cr_assert_not_null(rt);
    gs_pid pid = start_ok(rt, &plain_ops, NULL);
    int64_t v;
    cr_assert_eq(call_i64(rt, pid, K_GET, 0, &v, 5000), GS_OK);
    rt_free(rt);
    gs_runtime *rt0 = rt_new(0);
    rt_free(rt0);
}

Test(runtime, several_runtimes_work_independently, .timeout = 20)
{
    reset();
    fill_idx();
    gs_runtime *rts[3];
    gs_pid pids[3];
    for (int i = 0; i < 3; i++) {
        rts[i] = rt_new(1 + (unsigned)(i % 2));
        pids[i] = start_ok(rts[i], &plain_ops, &IDX[i]);
    }
    for (int i = 0; i < 3; i++)
        for (int k = 0; k <= i; k++)
            cr_assert_eq(gs_cast(rts[i], pids[i], C_COUNT, NULL, 0), GS_OK);
    for (int i = 0; i < 3; i++) {
        int64_t v = -1;
        cr_assert_eq(call_i64(rts[i], pids[i], K_GET, 0, &v, 5000), GS_OK);
        cr_assert_eq(v, i + 1);
    }
    rt_free(rts[1]);
    int64_t v = -1;
    cr_assert_eq(call_i64(rts[0], pids[0], K_GET, 0, &v, 5000), GS_OK);
    cr_assert_eq(call_i64(rts[2], pids[2], K_GET, 0, &v, 5000), GS_OK);
    rt_free(rts[0]);
    rt_free(rts[2]);
    cr_assert_eq(atomic_load(&g_term_shutdown), 3);
}

Test(runtime, runtime_limit, .timeout = 60)
{
    enum { MAXR = GS_MAX_RUNTIMES };
    gs_runtime **rts = calloc(MAXR + 1, sizeof *rts);
    cr_assert_not_null(rts);
    gs_runtime_opts o = {.workers = 1};
    int started = 0, rc = GS_OK;
    for (int i = 0; i < MAXR; i++) {
        rc = gs_runtime_start(&rts[i], &o);
        if (rc != GS_OK)
            break;
        started++;
    }
    int extra_rc = GS_OK;
    gs_runtime *extra = NULL;
    if (started == MAXR)
        extra_rc = gs_runtime_start(&extra, &o);
    for (int i = 0; i < started; i++)
        gs_runtime_stop(rts[i]);
    if (extra_rc == GS_OK && extra)
        gs_runtime_stop(extra);
    free(rts);
    cr_assert_eq(started, MAXR, "only %d runtimes could start (rc %d %s)", started, rc,
                 gs_strerror(rc));
    cr_assert_eq(extra_rc, GS_ELIMIT, "runtime number %d: %d (%s)", MAXR + 1, extra_rc,
                 gs_strerror(extra_rc));
    /* all stopped: a new one starts again */
    gs_runtime *rt = rt_new(1);
    rt_free(rt);
}

/* Under AddressSanitizer: the callbacks' fiber stacks go with the
 * runtime, and the poisoning the frames parked on them left in ASan's
 * shadow must go with them. Memory mapped afterwards, likely where the
 * stacks were, must be clean: else any access to it is reported as a
 * stack-buffer-underflow (in the program's code, or the next runtime's). */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sys/mman.h>

Test(runtime, a_stopped_runtimes_fiber_stacks_leave_no_poisoned_memory, .timeout = 20)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid p = start_ok(rt, &plain_ops, NULL);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(gs_cast(rt, p, C_COUNT, NULL, 0), GS_OK);
    int64_t v = -1;
    cr_assert_eq(call_i64(rt, p, K_GET, 0, &v, 5000), GS_OK);
    rt_free(rt);
    const size_t sizes[] = {1u << 20, 3u << 20, ((64u << 10) + 4096u) * 16u, 8u << 20, 64u << 20};
    for (int k = 0; k < 40; k++) {
        size_t bytes = sizes[k % 5];
        char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        cr_assert_neq(m, MAP_FAILED);
        char *bad = __asan_region_is_poisoned(m, bytes);
        munmap(m, bytes);
        cr_assert_null(bad, "a fresh mapping of %zu bytes is poisoned at +%#zx", bytes, (size_t)(bad - m));
    }
}
#endif

/* ---- bad input ---- */

Test(badinput, gs_start_arguments, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    gs_pid pid = 77;
    cr_assert_eq(gs_start(rt, NULL, NULL, &pid), GS_EINVAL, "ops NULL");
    cr_assert_eq(gs_start(NULL, &plain_ops, NULL, &pid), GS_EINVAL, "rt NULL");
    cr_assert_eq(gs_start(NULL, NULL, NULL, NULL), GS_EINVAL);
    rt_free(rt);
}

Test(badinput, gs_reply_with_garbage_from, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_from g1 = {{12345, 678}};
    gs_from g2 = {{UINT64_MAX, UINT64_MAX}};
    gs_from g3 = {{0, 0}};
    cr_assert_lt(gs_reply(rt, g1, "x", 1), 0);
    cr_assert_lt(gs_reply(rt, g2, "x", 1), 0);
    cr_assert_lt(gs_reply(rt, g3, NULL, 0), 0);
    cr_assert_eq(gs_reply(NULL, g1, "x", 1), GS_EINVAL, "rt NULL");
    uint64_t seed = 12345;
    for (int i = 0; i < 2000; i++) {
        gs_from g = {{xorshift64(&seed), xorshift64(&seed)}};
        cr_assert_lt(gs_reply(rt, g, "y", 1), 0, "made-up from %#" PRIx64 "/%#" PRIx64, g.w[0],
                     g.w[1]);
    }
    /* the same from a server callback, while a real call is pending */
    gs_pid pid = start_ok(rt, &plain_ops, NULL);
    int64_t v = -1;
    cr_assert_eq(call_i64(rt, pid, K_REPLY_GARBAGE, 0, &v, 5000), GS_OK,
                 "a garbage reply disturbed the real call");
    cr_assert_eq(v, 0);
    for (int i = 0; i < 4; i++)
        cr_assert_lt(atomic_load(&g_garbage_rc[i]), 0, "garbage from #%d gave %d", i,
                     atomic_load(&g_garbage_rc[i]));
    rt_free(rt);
}

Test(badinput, gs_reply_oversized_is_refused_and_call_still_answerable, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(1);
    gs_pid pid = start_ok(rt, &plain_ops, NULL);
    int64_t v = -1;
    int rc = call_i64(rt, pid, K_REPLY_HUGE, 0, &v, 5000);
    cr_assert_eq(atomic_load(&g_huge_rc), GS_EMSGSIZE, "gs_reply with len > GS_MSG_MAX gave %d",
                 atomic_load(&g_huge_rc));
    cr_assert_eq(rc, GS_OK, "the call should get the valid reply sent after the refused one: %d",
                 rc);
    cr_assert_eq(v, 0);
    rt_free(rt);
}

Test(badinput, ctx_null_accessors, .timeout = 10)
{
    cr_assert_eq(gs_self(NULL), GS_NOPID);
    cr_assert_null(gs_ctx_runtime(NULL));
}

Test(badinput, pid_format, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    gs_pid pid = start_ok(rt, &plain_ops, NULL);
    char buf[64];
    memset(buf, 'Z', sizeof buf);
    char *r = gs_pid_format(pid, buf, sizeof buf);
    cr_assert_eq(r, buf, "gs_pid_format must return buf");
    cr_assert_lt(strnlen(buf, sizeof buf), sizeof buf, "not NUL-terminated");
    cr_assert_gt(strlen(buf), 0);
    cr_assert_eq(buf[0], '<', "format is <0.IDX.GEN>, got %s", buf);
    cr_assert_eq(buf[strlen(buf) - 1], '>', "format is <0.IDX.GEN>, got %s", buf);
    /* two live servers format differently */
    gs_pid p2 = start_ok(rt, &plain_ops, NULL);
    char buf2[64];
    gs_pid_format(p2, buf2, sizeof buf2);
    cr_assert_str_neq(buf, buf2);
    /* small buffers are truncated, never overrun */
    char tiny[6];
    memset(tiny, 'Z', sizeof tiny);
    cr_assert_eq(gs_pid_format(pid, tiny, 4), tiny);
    cr_assert_lt(strnlen(tiny, 4), 4, "truncated output not NUL-terminated within cap");
    cr_assert_eq(tiny[4], 'Z', "gs_pid_format wrote beyond cap");
    cr_assert_eq(tiny[5], 'Z');
    char one[2] = {'Z', 'Z'};
    gs_pid_format(pid, one, 1);
    cr_assert_eq(one[0], '\0');
    cr_assert_eq(one[1], 'Z');
    /* any value formats without crashing */
    cr_assert_gt(strlen(gs_pid_format(GS_NOPID, buf, sizeof buf)), 0);
    cr_assert_gt(strlen(gs_pid_format(~(gs_pid)0, buf, sizeof buf)), 0);
    rt_free(rt);
}

/* ---- threads still waiting when the runtime stops --------------------- */

#include <signal.h>

static int never_reply(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    return GS_NOREPLY;
}

static const gs_server_ops mute_server_ops = {.name = "mute", .handle_call = never_reply};

typedef struct stuck_waiter {
    gs_runtime *rt;
    gs_pid server;
    bool by_request; /* gs_send_request + gs_wait_request, else gs_call */
    atomic_int waiting;
    int rc;
} stuck_waiter;

static void *stuck_waiter_main(void *arg)
{
    stuck_waiter *s = arg;
    int64_t reply = 0;
    if (s->by_request) {
        gs_request req;
        s->rc = gs_send_request(s->rt, s->server, 1, NULL, 0, GS_INFINITY, &req);
        atomic_store(&s->waiting, 1);
        if (s->rc == GS_OK)
            s->rc = gs_wait_request(s->rt, req, &reply, sizeof reply, NULL, GS_INFINITY);
    } else {
        atomic_store(&s->waiting, 1);
        s->rc = gs_call(s->rt, s->server, 1, NULL, 0, &reply, sizeof reply, NULL, GS_INFINITY);
    }
    return NULL;
}

/* Holds the waiter up after the stop has given its outcome, as if it had
 * lost its CPU right then. */
static void hold_up_300ms(int sig)
{
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
}

/* A thread waiting for a server's answer when gs_runtime_stop begins gets
 * GS_ENOPROC (the server stopped without answering), and the stop frees
 * nothing until it has returned: the waiter, held up by a signal right as
 * its outcome came, used to wake into freed memory. */
static void stop_with_a_thread_waiting(bool by_request)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = hold_up_300ms;
    cr_assert_eq(sigaction(SIGUSR1, &sa, &old), 0);
    stuck_waiter s = {.rt = rt_new(2), .by_request = by_request};
    s.server = start_ok(s.rt, &mute_server_ops, NULL);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, stuck_waiter_main, &s), 0);
    cr_assert(wait_int_eq(&s.waiting, 1, 5000));
    sleep_ms(100); /* asleep in its wait by now */
    pthread_kill(t, SIGUSR1);
    cr_assert_eq(gs_runtime_stop(s.rt), GS_OK);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(s.rc, GS_ENOPROC, "the waiter got %d", s.rc);
    cr_assert_eq(sigaction(SIGUSR1, &old, NULL), 0);
}

Test(runtime, stop_waits_for_a_thread_blocked_in_gs_call, .timeout = 20)
{
    stop_with_a_thread_waiting(false);
}

Test(runtime, stop_waits_for_a_thread_blocked_in_gs_wait_request, .timeout = 20)
{
    stop_with_a_thread_waiting(true);
}
