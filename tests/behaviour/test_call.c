/* test_call.c - gs_call / gs_reply semantics. */
#include "common.h"

enum {
    T_ECHO = 1,          /* reply with the request payload */
    T_SIZED = 2,         /* payload uint32 n: reply n pattern bytes */
    T_DEFER_STORE = 3,   /* keep `from`, return GS_NOREPLY, never reply */
    T_LATE_THEN_ECHO = 4, /* reply to the stored from, then echo */
    T_THREAD = 5,        /* hand `from` to a thread that replies 100 ms later */
    T_DOUBLE = 6,        /* reply "one" then "two" */
    T_NOREPLY_OK = 7,    /* return GS_OK without replying */
    T_SELF_CALL = 8,     /* gs_call itself, reply with the status */
    T_SENDER = 9,        /* reply with msg->sender */
    T_ECHO_RECORD = 10,  /* echo, record gs_reply's status */
    /* casts */
    C_LATE = 20,      /* reply to the stored from */
    C_SELF_CALL = 21, /* gs_call itself from handle_cast */
    C_SLEEP = 22,     /* sleep 300 ms */
    C_CRASH = 23,     /* return GS_EAGAIN */
    C_STOP = 24,      /* return GS_STOP */
};

static atomic_int g_calls;          /* handle_call invocations */
static atomic_int g_deferred;       /* T_DEFER_STORE received */
static atomic_int g_late_rc;        /* gs_reply status for the late reply */
static atomic_int g_late_cast_rc;
static atomic_int g_thread_rc;
static atomic_int g_thread_started;
static pthread_t g_thread;
static atomic_int g_double_rc1, g_double_rc2;
static atomic_int g_cast_self_rc;
static atomic_int g_echo_record_rc;
static atomic_int g_stored_set;
static gs_from g_stored_from; /* published by g_stored_set */
static gs_runtime *g_rt;
static atomic_int g_terminated;
static atomic_int g_misaligned;

#define UNSET 12345

static void reset(gs_runtime *rt)
{
    g_rt = rt;
    atomic_store(&g_calls, 0);
    atomic_store(&g_deferred, 0);
    atomic_store(&g_late_rc, UNSET);
    atomic_store(&g_late_cast_rc, UNSET);
    atomic_store(&g_thread_rc, UNSET);
    atomic_store(&g_thread_started, 0);
    atomic_store(&g_double_rc1, UNSET);
    atomic_store(&g_double_rc2, UNSET);
    atomic_store(&g_cast_self_rc, UNSET);
    atomic_store(&g_echo_record_rc, UNSET);
    atomic_store(&g_stored_set, 0);
    atomic_store(&g_terminated, 0);
    atomic_store(&g_misaligned, 0);
}

typedef struct {
    gs_from stored;
    int has_stored;
} call_state;

static unsigned char pattern_byte(size_t i) { return (unsigned char)((i * 13 + 1) & 0xff); }

struct thread_reply {
    gs_runtime *rt;
    gs_from from;
};

static void *reply_later(void *p)
{
    struct thread_reply *tr = p;
    sleep_ms(100);
    atomic_store(&g_thread_rc, gs_reply(tr->rt, tr->from, "from-thread", 11));
    free(tr);
    return NULL;
}

static int cl_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    gs_runtime *rt = gs_ctx_runtime(ctx);
    call_state *s = state;
    atomic_fetch_add(&g_calls, 1);
    switch (msg->tag) {
    case T_ECHO:
        if (msg->len && ((uintptr_t)msg->data % _Alignof(max_align_t)) != 0)
            atomic_fetch_add(&g_misaligned, 1);
        if (!msg->len && msg->data)
            atomic_fetch_add(&g_misaligned, 1000); /* data must be NULL when len is 0 */
        gs_reply(rt, from, msg->data, msg->len);
        return GS_OK;
    case T_ECHO_RECORD:
        atomic_store(&g_echo_record_rc, gs_reply(rt, from, msg->data, msg->len));
        return GS_OK;
    case T_SIZED: {
        uint32_t n = 0;
        if (msg->len == sizeof n)
            memcpy(&n, msg->data, sizeof n);
        unsigned char *buf = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern_byte(i);
        gs_reply(rt, from, n ? buf : NULL, n);
        free(buf);
        return GS_OK;
    }
    case T_DEFER_STORE:
        s->stored = from;
        s->has_stored = 1;
        g_stored_from = from;
        atomic_store(&g_stored_set, 1);
        atomic_fetch_add(&g_deferred, 1);
        return GS_NOREPLY;
    case T_LATE_THEN_ECHO:
        if (s->has_stored)
            atomic_store(&g_late_rc, gs_reply(rt, s->stored, "LATE-REPLY", 10));
        gs_reply(rt, from, msg->data, msg->len);
        return GS_OK;
    case T_THREAD: {
        struct thread_reply *tr = malloc(sizeof *tr);
        tr->rt = rt;
        tr->from = from; /* a plain value: copy it */
        if (pthread_create(&g_thread, NULL, reply_later, tr) != 0) {
            free(tr);
            gs_reply(rt, from, "no-thread", 9);
            return GS_OK;
        }
        atomic_store(&g_thread_started, 1);
        return GS_NOREPLY;
    }
    case T_DOUBLE:
        atomic_store(&g_double_rc1, gs_reply(rt, from, "one", 3));
        atomic_store(&g_double_rc2, gs_reply(rt, from, "two", 3));
        return GS_OK;
    case T_NOREPLY_OK:
        return GS_OK;
    case T_SELF_CALL: {
        char buf[8];
        int rc = gs_call(rt, gs_self(ctx), T_ECHO, "me", 2, buf, sizeof buf, NULL, 1000);
        gs_reply(rt, from, &rc, sizeof rc);
        return GS_OK;
    }
    case T_SENDER: {
        gs_pid snd = msg->sender;
        gs_reply(rt, from, &snd, sizeof snd);
        return GS_OK;
    }
    default:
        gs_reply(rt, from, "?", 1);
        return GS_OK;
    }
}

static int cl_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    gs_runtime *rt = gs_ctx_runtime(ctx);
    call_state *s = state;
    switch (msg->tag) {
    case C_LATE:
        if (s->has_stored)
            atomic_store(&g_late_cast_rc, gs_reply(rt, s->stored, "LATE-REPLY", 10));
        return GS_OK;
    case C_SELF_CALL: {
        char buf[8];
        atomic_store(&g_cast_self_rc,
                     gs_call(rt, gs_self(ctx), T_ECHO, "me", 2, buf, sizeof buf, NULL, 1000));
        return GS_OK;
    }
    case C_SLEEP:
        sleep_ms(300);
        return GS_OK;
    case C_CRASH:
        return GS_EAGAIN;
    case C_STOP:
        return GS_STOP;
    default:
        return GS_OK;
    }
}

static void cl_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    (void)state;
    (void)reason;
    atomic_fetch_add(&g_terminated, 1);
}

static const gs_server_ops call_ops = {
    .name = "call-server",
    .state_size = sizeof(call_state),
    .handle_call = cl_call,
    .handle_cast = cl_cast,
    .terminate = cl_terminate,
};

/* ------------------------------------------------------------------ */

Test(call, reply_is_copied_with_full_length, .timeout = 10)
{
    gs_runtime *rt = rt_new(2);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    unsigned char req[100], rep[256];
    for (size_t i = 0; i < sizeof req; i++)
        req[i] = (unsigned char)(i ^ 0x5a);
    size_t len = 0;
    int rc = gs_call(rt, pid, T_ECHO, req, sizeof req, rep, sizeof rep, &len, 5000);
    cr_assert_eq(rc, GS_OK, "echo call: %d (%s)", rc, gs_strerror(rc));
    cr_assert_eq(len, sizeof req);
    cr_assert_eq(memcmp(req, rep, sizeof req), 0, "reply bytes differ");

    /* reply_len may be NULL; GS_INFINITY is a valid timeout */
    memset(rep, 0, sizeof rep);
    rc = gs_call(rt, pid, T_ECHO, "hello", 5, rep, sizeof rep, NULL, GS_INFINITY);
    cr_assert_eq(rc, GS_OK);
    cr_assert_eq(memcmp(rep, "hello", 5), 0);

    /* exact fit */
    char four[4];
    len = 0;
    rc = gs_call(rt, pid, T_ECHO, "abcd", 4, four, sizeof four, &len, 5000);
    cr_assert_eq(rc, GS_OK, "a reply exactly reply_cap long must fit: %d", rc);
    cr_assert_eq(len, 4);
    cr_assert_eq(memcmp(four, "abcd", 4), 0);

    /* a 1 MiB reply */
    uint32_t n = 1u << 20;
    unsigned char *big = malloc(n);
    cr_assert_not_null(big);
    len = 0;
    rc = gs_call(rt, pid, T_SIZED, &n, sizeof n, big, n, &len, 10000);
    cr_assert_eq(rc, GS_OK);
    cr_assert_eq(len, n);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = big[i] == pattern_byte(i);
    cr_assert(ok, "1 MiB reply damaged");
    /* a 1 MiB request echoed back */
    unsigned char *req1m = malloc(n);
    cr_assert_not_null(req1m);
    for (size_t i = 0; i < n; i++)
        req1m[i] = (unsigned char)(i * 31 + 7);
    memset(big, 0, n);
    len = 0;
    rc = gs_call(rt, pid, T_ECHO, req1m, n, big, n, &len, 10000);
    cr_assert_eq(rc, GS_OK);
    cr_assert_eq(len, n);
    cr_assert_eq(memcmp(req1m, big, n), 0, "1 MiB request/reply damaged");
    free(req1m);
    free(big);
    cr_assert_eq(atomic_load(&g_misaligned), 0,
                 "call payloads misaligned or non-NULL when empty (%d)",
                 atomic_load(&g_misaligned));
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, reply_larger_than_cap_is_truncated_with_emsgsize, .timeout = 10)
{
    gs_runtime *rt = rt_new(2);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    unsigned char buf[200];
    memset(buf, 0xAB, sizeof buf);
    uint32_t n = 1000;
    size_t len = 0;
    int rc = gs_call(rt, pid, T_SIZED, &n, sizeof n, buf, 100, &len, 5000);
    cr_assert_eq(rc, GS_EMSGSIZE, "got %d (%s)", rc, gs_strerror(rc));
    cr_assert_eq(len, 1000, "reply_len must be the full reply size, got %zu", len);
    for (size_t i = 0; i < 100; i++)
        cr_assert_eq(buf[i], pattern_byte(i), "byte %zu of the truncated reply is wrong", i);
    for (size_t i = 100; i < sizeof buf; i++)
        cr_assert_eq(buf[i], 0xAB, "byte %zu beyond reply_cap was written", i);
    /* the server is fine afterwards */
    char rep[8];
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "ok", 2, rep, sizeof rep, NULL, 5000), GS_OK);
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, null_reply_with_zero_cap, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    size_t len = 777;
    int rc = gs_call(rt, pid, T_ECHO, NULL, 0, NULL, 0, &len, 5000);
    cr_assert_eq(rc, GS_OK, "empty request, empty reply, NULL/0 buffer: %d (%s)", rc,
                 gs_strerror(rc));
    cr_assert_eq(len, 0);
    rc = gs_call(rt, pid, T_ECHO, NULL, 0, NULL, 0, NULL, 5000);
    cr_assert_eq(rc, GS_OK);
    /* a non-empty reply does not fit in 0 bytes */
    uint32_t n = 5;
    len = 0;
    rc = gs_call(rt, pid, T_SIZED, &n, sizeof n, NULL, 0, &len, 5000);
    cr_assert_eq(rc, GS_EMSGSIZE, "5-byte reply into cap 0: %d (%s)", rc, gs_strerror(rc));
    cr_assert_eq(len, 5);
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, sender_is_nopid_from_outside_thread, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    gs_pid snd = 42;
    cr_assert_eq(gs_call(rt, pid, T_SENDER, NULL, 0, &snd, sizeof snd, NULL, 5000), GS_OK);
    cr_assert_eq(snd, GS_NOPID);
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, timeout_then_late_reply_during_next_call_is_not_seen, .timeout = 20)
{
    gs_runtime *rt = rt_new(2);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    for (int round = 0; round < 5; round++) {
        char buf[32];
        memset(buf, 0, sizeof buf);
        size_t len = 0;
        int64_t t0 = now_ns();
        int rc = gs_call(rt, pid, T_DEFER_STORE, NULL, 0, buf, sizeof buf, &len, 200);
        int64_t took = now_ns() - t0;
        cr_assert_eq(rc, GS_ETIMEDOUT, "round %d: %d (%s)", round, rc, gs_strerror(rc));
        cr_assert_geq(took, 199LL * 1000000, "timed out after only %lld ns", (long long)took);
        cr_assert_lt(took, 3000LL * 1000000, "a 200 ms timeout took %lld ms",
                     (long long)(took / 1000000));
        /* call B: during it the server answers the stale from A */
        atomic_store(&g_late_rc, UNSET);
        char b[32];
        memset(b, 0, sizeof b);
        len = 0;
        rc = gs_call(rt, pid, T_LATE_THEN_ECHO, "call-B", 6, b, sizeof b, &len, 5000);
        cr_assert_eq(rc, GS_OK, "call B: %d (%s)", rc, gs_strerror(rc));
        cr_assert_eq(len, 6, "call B got a reply of %zu bytes ('%.*s')", len, (int)len, b);
        cr_assert_eq(memcmp(b, "call-B", 6), 0, "call B saw '%.*s'", 6, b);
        cr_assert_eq(atomic_load(&g_late_rc), GS_ENOENT,
                     "a reply to a timed-out call must give GS_ENOENT, got %d",
                     atomic_load(&g_late_rc));
    }
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, timeout_then_late_reply_before_next_call_is_not_seen, .timeout = 20)
{
    gs_runtime *rt = rt_new(2);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    for (int round = 0; round < 5; round++) {
        char buf[32];
        int rc = gs_call(rt, pid, T_DEFER_STORE, NULL, 0, buf, sizeof buf, NULL, 100);
        cr_assert_eq(rc, GS_ETIMEDOUT);
        atomic_store(&g_late_cast_rc, UNSET);
        cr_assert_eq(gs_cast(rt, pid, C_LATE, NULL, 0), GS_OK);
        char b[32];
        memset(b, 0, sizeof b);
        size_t len = 0;
        rc = gs_call(rt, pid, T_ECHO, "fresh", 5, b, sizeof b, &len, 5000);
        cr_assert_eq(rc, GS_OK);
        cr_assert_eq(len, 5, "next call got %zu bytes ('%.*s')", len, (int)len, b);
        cr_assert_eq(memcmp(b, "fresh", 5), 0);
        /* the cast was sent before the call by the same thread: handled first */
        cr_assert_eq(atomic_load(&g_late_cast_rc), GS_ENOENT, "late reply status %d",
                     atomic_load(&g_late_cast_rc));
    }
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, call_timing_out_while_queued_then_next_call_ok, .timeout = 15)
{
    gs_runtime *rt = rt_new(1);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    cr_assert_eq(gs_cast(rt, pid, C_SLEEP, NULL, 0), GS_OK); /* server busy 300 ms */
    char buf[32];
    int64_t t0 = now_ns();
    int rc = gs_call(rt, pid, T_ECHO_RECORD, "first", 5, buf, sizeof buf, NULL, 50);
    int64_t took = now_ns() - t0;
    cr_assert_eq(rc, GS_ETIMEDOUT, "%d (%s)", rc, gs_strerror(rc));
    cr_assert_geq(took, 49LL * 1000000);
    memset(buf, 0, sizeof buf);
    size_t len = 0;
    rc = gs_call(rt, pid, T_ECHO, "second", 6, buf, sizeof buf, &len, 5000);
    cr_assert_eq(rc, GS_OK);
    cr_assert_eq(len, 6, "second call got '%.*s'", (int)len, buf);
    cr_assert_eq(memcmp(buf, "second", 6), 0);
    int rec = atomic_load(&g_echo_record_rc);
    /* the runtime may drop a call whose caller gave up; if it ran, nobody
     * waits, and a reply from the call's own handle_call says GS_OK (see
     * gs_reply: `return gs_reply(...)` must not crash the server) */
    cr_assert(rec == UNSET || rec == GS_OK, "reply to an abandoned call gave %d", rec);
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, enoproc_for_dead_pids, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    char buf[8];
    cr_assert_eq(gs_call(rt, GS_NOPID, T_ECHO, "x", 1, buf, sizeof buf, NULL, 1000), GS_ENOPROC);
    stop_ok(rt, pid);
    int64_t t0 = now_ms();
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "x", 1, buf, sizeof buf, NULL, 5000), GS_ENOPROC);
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "x", 1, buf, sizeof buf, NULL, GS_INFINITY), GS_ENOPROC);
    cr_assert_lt(now_ms() - t0, 2500, "GS_ENOPROC for a dead pid must not wait");
    rt_free(rt);
}

struct caller_arg {
    gs_runtime *rt;
    gs_pid pid;
    uint32_t tag;
    int timeout;
    int rc;
    int64_t took_ms;
    char buf[32];
    size_t len;
};

static void *caller(void *p)
{
    struct caller_arg *a = p;
    int64_t t0 = now_ms();
    a->rc = gs_call(a->rt, a->pid, a->tag, NULL, 0, a->buf, sizeof a->buf, &a->len, a->timeout);
    a->took_ms = now_ms() - t0;
    return NULL;
}

static void pending_call_fails_when_server_ends(int how)
{
    gs_runtime *rt = rt_new(2);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    struct caller_arg a = {.rt = rt, .pid = pid, .tag = T_DEFER_STORE, .timeout = 10000};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, caller, &a), 0);
    cr_assert(wait_int_eq(&g_deferred, 1, 5000), "the call never reached handle_call");
    if (how == 0)
        cr_assert_eq(gs_stop(rt, pid, GS_NORMAL, 5000), GS_OK);
    else if (how == 1)
        cr_assert_eq(gs_cast(rt, pid, C_CRASH, NULL, 0), GS_OK);
    else
        cr_assert_eq(gs_cast(rt, pid, C_STOP, NULL, 0), GS_OK);
    pthread_join(th, NULL);
    cr_assert_eq(a.rc, GS_ENOPROC, "pending call got %d (%s)", a.rc, gs_strerror(a.rc));
    cr_assert_lt(a.took_ms, 5000, "pending call only returned after %lld ms (timeout 10000)",
                 (long long)a.took_ms);
    cr_assert(wait_int_eq(&g_terminated, 1, 5000));
    /* the kept `from` is still safe to use: the reply is dropped */
    cr_assert_eq(atomic_load(&g_stored_set), 1);
    int rrc = gs_reply(rt, g_stored_from, "too late", 8);
    cr_assert_eq(rrc, GS_ENOENT, "reply after the server stopped gave %d (%s)", rrc,
                 gs_strerror(rrc));
    rt_free(rt);
}

Test(call, pending_call_gets_enoproc_when_server_stopped, .timeout = 20)
{
    pending_call_fails_when_server_ends(0);
}

Test(call, pending_call_gets_enoproc_when_server_crashes, .timeout = 20)
{
    pending_call_fails_when_server_ends(1);
}

Test(call, pending_call_gets_enoproc_when_server_returns_stop, .timeout = 20)
{
    pending_call_fails_when_server_ends(2);
}

Test(call, calling_self_gives_edeadlk, .timeout = 15)
{
    gs_runtime *rt = rt_new(2);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    int inner = UNSET;
    int rc = gs_call(rt, pid, T_SELF_CALL, NULL, 0, &inner, sizeof inner, NULL, 5000);
    cr_assert_eq(rc, GS_OK, "outer call: %d (%s)", rc, gs_strerror(rc));
    cr_assert_eq(inner, GS_EDEADLK, "gs_call to self from handle_call gave %d (%s)", inner,
                 gs_strerror(inner));
    cr_assert_eq(gs_cast(rt, pid, C_SELF_CALL, NULL, 0), GS_OK);
    char buf[8];
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "s", 1, buf, sizeof buf, NULL, 5000), GS_OK);
    int crc = atomic_load(&g_cast_self_rc);
    cr_assert_eq(crc, GS_EDEADLK, "gs_call to self from handle_cast gave %d (%s)", crc,
                 gs_strerror(crc));
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, deferred_reply_from_another_thread, .timeout = 15)
{
    gs_runtime *rt = rt_new(1);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    char buf[32];
    memset(buf, 0, sizeof buf);
    size_t len = 0;
    int64_t t0 = now_ms();
    int rc = gs_call(rt, pid, T_THREAD, NULL, 0, buf, sizeof buf, &len, 5000);
    int64_t took = now_ms() - t0;
    cr_assert_eq(atomic_load(&g_thread_started), 1, "helper thread not started");
    pthread_join(g_thread, NULL);
    cr_assert_eq(rc, GS_OK, "%d (%s)", rc, gs_strerror(rc));
    cr_assert_eq(len, 11);
    cr_assert_eq(memcmp(buf, "from-thread", 11), 0);
    cr_assert_geq(took, 90, "the reply came before the thread sent it?");
    cr_assert_eq(atomic_load(&g_thread_rc), GS_OK);
    /* the server kept working while the reply was pending */
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "z", 1, buf, sizeof buf, NULL, 5000), GS_OK);
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, server_keeps_serving_while_a_reply_is_deferred, .timeout = 15)
{
    gs_runtime *rt = rt_new(2);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    struct caller_arg a = {.rt = rt, .pid = pid, .tag = T_DEFER_STORE, .timeout = 10000};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, caller, &a), 0);
    cr_assert(wait_int_eq(&g_stored_set, 1, 5000));
    for (int i = 0; i < 50; i++) {
        char buf[8];
        cr_assert_eq(gs_call(rt, pid, T_ECHO, "q", 1, buf, sizeof buf, NULL, 5000), GS_OK);
    }
    gs_from f = g_stored_from;
    int rc1 = gs_reply(rt, f, "outside", 7);
    int rc2 = gs_reply(rt, f, "again!!", 7);
    pthread_join(th, NULL);
    cr_assert_eq(rc1, GS_OK, "first reply from the test thread: %d", rc1);
    cr_assert_lt(rc2, 0, "second reply to the same from must fail");
    cr_expect_eq(rc2, GS_ENOENT);
    cr_assert_eq(a.rc, GS_OK);
    cr_assert_eq(a.len, 7);
    cr_assert_eq(memcmp(a.buf, "outside", 7), 0, "caller saw '%.7s'", a.buf);
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, second_reply_fails_and_caller_keeps_the_first, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    char buf[8];
    memset(buf, 0, sizeof buf);
    size_t len = 0;
    int rc = gs_call(rt, pid, T_DOUBLE, NULL, 0, buf, sizeof buf, &len, 5000);
    cr_assert_eq(rc, GS_OK);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(buf, "one", 3), 0, "caller got '%.3s'", buf);
    /* the caller may wake before handle_call has returned: a second call
     * to the same server is handled only after it has */
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "s", 1, buf, sizeof buf, NULL, 5000), GS_OK);
    cr_assert_eq(atomic_load(&g_double_rc1), GS_OK);
    int rc2 = atomic_load(&g_double_rc2);
    cr_assert_lt(rc2, 0, "second gs_reply returned %d", rc2);
    cr_expect_eq(rc2, GS_ENOENT);
    stop_ok(rt, pid);
    rt_free(rt);
}

static logcap g_log;

Test(call, handle_call_ok_without_reply_gives_enoreply_and_logs, .timeout = 20)
{
    logcap_init(&g_log);
    gs_runtime *rt = rt_new(2);
    reset(rt);
    cr_assert_eq(gs_set_logger(rt, logcap_fn, &g_log), GS_OK);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    char buf[8];
    int64_t t0 = now_ms();
    int rc = gs_call(rt, pid, T_NOREPLY_OK, NULL, 0, buf, sizeof buf, NULL, 10000);
    int64_t took = now_ms() - t0;
    cr_assert_eq(rc, GS_ENOREPLY, "%d (%s)", rc, gs_strerror(rc));
    cr_assert_lt(took, 5000, "GS_ENOREPLY came only after %lld ms (timeout 10000)",
                 (long long)took);
    bool logged = logcap_wait(&g_log, GS_LOG_ERROR, NULL, NULL, NULL, NULL, 3000);
    if (!logged)
        logcap_dump(&g_log, "no error line");
    cr_assert(logged, "returning GS_OK without replying must be logged as an error");
    /* the call is over: a later call works */
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "a", 1, buf, sizeof buf, NULL, 5000), GS_OK);
    rt_free(rt);
    logcap_destroy(&g_log);
}

Test(call, no_handle_call_gives_enotsup, .timeout = 10)
{
    static const gs_server_ops cast_only = {.name = "cast-only", .handle_cast = cl_cast};
    gs_runtime *rt = rt_new(1);
    reset(rt);
    gs_pid pid = start_ok(rt, &cast_only, NULL);
    char buf[8];
    int rc = gs_call(rt, pid, T_ECHO, "x", 1, buf, sizeof buf, NULL, 5000);
    cr_assert_eq(rc, GS_ENOTSUP, "%d (%s)", rc, gs_strerror(rc));
    cr_assert_eq(gs_call(rt, pid, T_ECHO, NULL, 0, NULL, 0, NULL, 5000), GS_ENOTSUP);
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(call, invalid_arguments, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    reset(rt);
    gs_pid pid = start_ok(rt, &call_ops, NULL);
    char buf[8];
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "x", 1, buf, sizeof buf, NULL, -5), GS_EINVAL,
                 "timeout -5");
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "x", 1, buf, sizeof buf, NULL, -2), GS_EINVAL,
                 "timeout -2");
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "x", 1, buf, sizeof buf, NULL, -2147483647 - 1),
                 GS_EINVAL, "timeout INT_MIN");
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "x", 1, buf, sizeof buf, NULL, GS_TIMEOUT_MAX_MS + 1),
                 GS_EINVAL, "timeout above GS_TIMEOUT_MAX_MS");
    cr_assert_eq(gs_call(NULL, pid, T_ECHO, "x", 1, buf, sizeof buf, NULL, 1000), GS_EINVAL,
                 "NULL runtime");
    cr_assert_eq(gs_call(rt, pid, T_ECHO, NULL, 3, buf, sizeof buf, NULL, 1000), GS_EINVAL,
                 "NULL data with len > 0");
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "x", 1, NULL, 8, NULL, 1000), GS_EINVAL,
                 "NULL reply with reply_cap > 0");
    cr_assert_eq(gs_call(rt, pid, GS_TAG_RUNTIME_BASE, "x", 1, buf, sizeof buf, NULL, 1000),
                 GS_EINVAL, "runtime tag");
    cr_assert_eq(gs_call(rt, pid, 0xFFFFFFFFu, "x", 1, buf, sizeof buf, NULL, 1000), GS_EINVAL,
                 "runtime tag");
    char small[4] = "abc";
    cr_assert_eq(gs_call(rt, pid, T_ECHO, small, GS_MSG_MAX + 1, buf, sizeof buf, NULL, 1000),
                 GS_EMSGSIZE, "oversized request");
    cr_assert_eq(atomic_load(&g_calls), 0, "a refused call reached handle_call");
    /* a valid timeout at the limit is accepted */
    cr_assert_eq(gs_call(rt, pid, T_ECHO, "x", 1, buf, sizeof buf, NULL, GS_TIMEOUT_MAX_MS), GS_OK);
    stop_ok(rt, pid);
    rt_free(rt);
}

/* ---- many concurrent callers, every reply goes to its own caller ---- */

#define NCALLERS 4
#define CALLS_EACH 2000

struct echo_arg {
    gs_runtime *rt;
    gs_pid pid[2];
    int id;
    int errors;
    int mismatches;
    int first_rc;
};

static void *echo_caller(void *p)
{
    struct echo_arg *a = p;
    for (int i = 0; i < CALLS_EACH; i++) {
        char req[32], rep[32];
        int n = snprintf(req, sizeof req, "caller%d-msg%d", a->id, i);
        size_t len = 0;
        int rc = gs_call(a->rt, a->pid[i & 1], T_ECHO, req, (size_t)n, rep, sizeof rep, &len,
                         10000);
        if (rc != GS_OK) {
            if (!a->errors)
                a->first_rc = rc;
            a->errors++;
        } else if (len != (size_t)n || memcmp(req, rep, (size_t)n) != 0) {
            a->mismatches++;
        }
    }
    return NULL;
}

Test(call, concurrent_callers_each_get_their_own_reply, .timeout = 40)
{
    gs_runtime *rt = rt_new(2);
    reset(rt);
    gs_pid p0 = start_ok(rt, &call_ops, NULL);
    gs_pid p1 = start_ok(rt, &call_ops, NULL);
    pthread_t th[NCALLERS];
    struct echo_arg args[NCALLERS];
    for (int i = 0; i < NCALLERS; i++) {
        args[i] = (struct echo_arg){.rt = rt, .pid = {p0, p1}, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, echo_caller, &args[i]), 0);
    }
    for (int i = 0; i < NCALLERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NCALLERS; i++) {
        cr_assert_eq(args[i].errors, 0, "caller %d: %d failed calls (first %d %s)", i,
                     args[i].errors, args[i].first_rc, gs_strerror(args[i].first_rc));
        cr_assert_eq(args[i].mismatches, 0, "caller %d got %d replies meant for others", i,
                     args[i].mismatches);
    }
    cr_assert_eq(atomic_load(&g_calls), NCALLERS * CALLS_EACH);
    stop_ok(rt, p0);
    stop_ok(rt, p1);
    rt_free(rt);
}
