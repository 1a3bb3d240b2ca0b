/* test_badinput.c - every public function fed bad input, table-driven.
 *
 * Each table entry names the function, the bad input and the code the
 * header documents for it; the test runs the call and expects exactly
 * that code (cr_expect: every mismatch of a table is reported, not only
 * the first), then checks that the runtime still serves: a call round trip
 * to a live server and a fresh server started, called and stopped.
 *
 * Inputs: NULL pointers, GS_NOPID, a stale pid (its server stopped), made
 * up pids, a pid of ANOTHER live runtime, timeouts -2, INT_MIN,
 * GS_TIMEOUT_MAX_MS + 1 and INT_MAX, sizes GS_MSG_MAX + 1 and SIZE_MAX
 * with a 16-byte buffer (the library must check the size before reading),
 * runtime tags, garbage gs_from / gs_timer / gs_ref values, replies to a
 * `from` twice and after its caller gave up, double gs_stop, and calls
 * from inside callbacks that are refused there (GS_EDEADLK, linking to
 * self, ...).
 *
 * Not testable: "a runtime already stopped". gs_runtime_stop frees the
 * runtime and the header says `rt` is invalid afterwards, so passing it
 * again is a use after free, not an input the library can detect.
 *
 * Where the header gives no code for an input the entry says which
 * convention it follows (e.g. gs_demonitor with rt NULL: GS_EINVAL, as
 * every other function with rt NULL).
 */
#include <limits.h>

#include "common.h"

enum { T_ECHO = 1, T_SLEEP = 2, T_DEFER = 3, T_PROBE = 4, T_REPLY_TWICE = 5, T_REPLY_LATE = 6 };

/* ------------------------------------------------------------------ */
/* The server                                                          */
/* ------------------------------------------------------------------ */

typedef struct bstate {
    gs_from kept;
    int has_kept;
} bstate;

static atomic_int g_idle_msgs;  /* GS_TAG_TIMEOUT messages seen */
static atomic_int g_deferred;   /* deferred froms kept */
static gs_from g_kept_from;     /* written before g_deferred */
static atomic_int g_reply_twice_rc[2]; /* gs_reply twice inside one handle_call */
static atomic_int g_reply_twice_done;  /* set after both are stored */
static atomic_int g_reply_late_rc;     /* gs_reply inside handle_call, caller gone */

/* Probes run inside handle_call; the reply carries their return code. */
enum {
    P_STOP_SELF = 1,
    P_KILL_SELF,
    P_CALL_SELF,
    P_RUNTIME_STOP,
    P_LINK_SELF,
    P_LINK_NOPID,
    P_LINK_STALE,
    P_LINK_OTHER_RT,
    P_UNLINK_NEVER,
    P_IDLE_BAD,
};

typedef struct probe_req {
    int probe;
    int pad;
    gs_pid arg;
} probe_req;


static int run_probe(gs_ctx *ctx, const probe_req *p)
{
    gs_runtime *rt = gs_ctx_runtime(ctx);
    int64_t v = 0;
    switch (p->probe) {
    case P_STOP_SELF:
        return gs_stop(rt, gs_self(ctx), GS_NORMAL, 1000);
    case P_KILL_SELF:
        return gs_kill(rt, gs_self(ctx));
    case P_CALL_SELF:
        return gs_call(rt, gs_self(ctx), T_ECHO, &v, sizeof v, &v, sizeof v, NULL, 1000);
    case P_RUNTIME_STOP:
        return gs_runtime_stop(rt);
    case P_LINK_SELF:
        return gs_link(ctx, gs_self(ctx));
    case P_LINK_NOPID:
        return gs_link(ctx, GS_NOPID);
    case P_LINK_STALE:
    case P_LINK_OTHER_RT:
        return gs_link(ctx, p->arg);
    case P_UNLINK_NEVER:
        return gs_unlink(ctx, p->arg);
    case P_IDLE_BAD:
        /* All ignored: 0, negative other than GS_INFINITY. */
        gs_set_idle_timeout(ctx, 0);
        gs_set_idle_timeout(ctx, -2);
        gs_set_idle_timeout(ctx, INT_MIN);
        return GS_OK;
    default:
        return 9999;
    }
}

static int b_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    bstate *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (msg->tag == T_DEFER) {
        s->kept = from;
        s->has_kept = 1;
        g_kept_from = from;
        atomic_fetch_add(&g_deferred, 1);
        return GS_NOREPLY;
    }
    if (msg->tag == T_PROBE && msg->len == sizeof(probe_req)) {
        probe_req p;
        memcpy(&p, msg->data, sizeof p);
        int rc = run_probe(ctx, &p);
        gs_reply(rt, from, &rc, sizeof rc);
        return GS_OK;
    }
    if (msg->tag == T_REPLY_TWICE) {
        int rc1 = gs_reply(rt, from, NULL, 0);
        int rc2 = gs_reply(rt, from, NULL, 0);
        atomic_store(&g_reply_twice_rc[0], rc1);
        atomic_store(&g_reply_twice_rc[1], rc2);
        atomic_store(&g_reply_twice_done, 1);
        return GS_OK;
    }
    if (msg->tag == T_REPLY_LATE) {
        atomic_store(&g_reply_late_rc, gs_reply(rt, from, NULL, 0));
        return GS_OK;
    }
    /* T_ECHO */
    int64_t x = 0;
    if (msg->len == sizeof x)
        memcpy(&x, msg->data, sizeof x);
    int64_t r = 2 * x + 1;
    gs_reply(rt, from, &r, sizeof r);
    return GS_OK;
}

static int b_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    (void)state;
    if (msg->tag == T_SLEEP)
        sleep_ms(200);
    return GS_OK;
}

static int b_info(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    (void)state;
    if (msg->tag == GS_TAG_TIMEOUT)
        atomic_fetch_add(&g_idle_msgs, 1);
    return GS_OK;
}

static const gs_server_ops b_ops = {
    .name = "badinput",
    .state_size = sizeof(bstate),
    .handle_call = b_call,
    .handle_cast = b_cast,
    .handle_info = b_info,
};

/* ------------------------------------------------------------------ */
/* Fixture                                                             */
/* ------------------------------------------------------------------ */

static struct fixture {
    gs_runtime *rt, *rt2;
    gs_pid live;   /* a live server of rt */
    gs_pid stale;  /* a server of rt that stopped */
    gs_pid other;  /* a live server of rt2 */
    gs_pid rnd[4]; /* made-up pids */
    gs_timer other_timer; /* a pending timer of rt2 */
    gs_ref other_ref;     /* a monitor of rt2 */
    gs_from answered;     /* the from of a call that was answered */
} F;

static char g_small[16];   /* a small buffer passed with huge sizes */
static char g_reply[16];
static logcap g_log;

static void fx_setup(void)
{
    memset(&F, 0, sizeof F);
    memset(g_small, 0x5a, sizeof g_small);
    logcap_init(&g_log);
    F.rt = rt_new(2);
    F.rt2 = rt_new(1);
    gs_set_logger(F.rt, logcap_fn, &g_log);
    gs_set_logger(F.rt2, logcap_fn, &g_log);
    F.live = start_ok(F.rt, &b_ops, NULL);
    F.stale = start_ok(F.rt, &b_ops, NULL);
    stop_ok(F.rt, F.stale);
    F.other = start_ok(F.rt2, &b_ops, NULL);
    uint64_t s = 0x243F6A8885A308D3ULL;
    for (int i = 0; i < 4; i++)
        F.rnd[i] = xorshift64(&s);
    F.rnd[3] = UINT64_MAX;
    cr_assert_eq(gs_send_after(F.rt2, F.other, 7, NULL, 0, 3600 * 1000, &F.other_timer), GS_OK);
    gs_pid w2 = start_ok(F.rt2, &b_ops, NULL);
    cr_assert_eq(gs_monitor(F.rt2, w2, F.other, &F.other_ref), GS_OK);
    atomic_store(&g_deferred, 0);
}

static void fx_teardown(void)
{
    if (F.rt)
        rt_free(F.rt);
    if (F.rt2)
        rt_free(F.rt2);
    cr_expect_eq(g_log.null_lines, 0, "the library logged a NULL line");
    logcap_destroy(&g_log);
}

/* The runtime still serves: a round trip to the live server, and a fresh
 * server started, called and stopped. */
static void still_serving(const char *after)
{
    int64_t r = 0;
    int rc = call_i64(F.rt, F.live, T_ECHO, 20, &r, 5000);
    cr_assert_eq(rc, GS_OK, "after %s: call to the live server returned %d (%s)", after, rc,
                 gs_strerror(rc));
    cr_assert_eq(r, 41, "after %s: echo %" PRId64, after, r);
    gs_pid p = start_ok(F.rt, &b_ops, NULL);
    rc = call_i64(F.rt, p, T_ECHO, 5, &r, 5000);
    cr_assert_eq(rc, GS_OK, "after %s: call to a fresh server returned %d (%s)", after, rc,
                 gs_strerror(rc));
    cr_assert_eq(r, 11);
    stop_ok(F.rt, p);
    rc = call_i64(F.rt2, F.other, T_ECHO, 1, &r, 5000);
    cr_assert_eq(rc, GS_OK, "after %s: the other runtime: %d (%s)", after, rc, gs_strerror(rc));
}

/* ------------------------------------------------------------------ */
/* Tables                                                              */
/* ------------------------------------------------------------------ */

typedef struct entry {
    const char *call;
    const char *input;
    int want;
    int (*run)(void);
} entry;

static void run_table(const char *what, const entry *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = t[i].run();
        cr_expect_eq(rc, t[i].want, "%s(%s): returned %d (%s), the header documents %d (%s)",
                     t[i].call, t[i].input, rc, gs_strerror(rc), t[i].want,
                     gs_strerror(t[i].want));
    }
    still_serving(what);
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define CASE(fn, expr)                                                                             \
    static int fn(void) { return (expr); }

/* Timeouts refused with GS_EINVAL everywhere. */
#define BAD_TIMEOUT_1 (-2)
#define BAD_TIMEOUT_2 INT_MIN
#define BAD_TIMEOUT_3 (GS_TIMEOUT_MAX_MS + 1)
#define BAD_TIMEOUT_4 INT_MAX

/* ---- runtime ------------------------------------------------------- */

static int rt_start_bad_workers(unsigned w)
{
    gs_runtime *rt = NULL;
    gs_runtime_opts o = {.workers = w};
    int rc = gs_runtime_start(&rt, &o);
    if (rc == GS_OK)
        gs_runtime_stop(rt); /* do not leak on a wrong answer */
    return rc;
}

static int rt_stats_null_out(void) { return gs_runtime_stats_get(F.rt, NULL); }
static int rt_stats_null_rt(void)
{
    gs_runtime_stats st;
    return gs_runtime_stats_get(NULL, &st);
}

CASE(c_rtstart_null, gs_runtime_start(NULL, NULL))
CASE(c_rtstart_workers, rt_start_bad_workers(GS_MAX_WORKERS + 1))
CASE(c_rtstart_workers_max, rt_start_bad_workers(UINT_MAX))
CASE(c_rtstop_null, gs_runtime_stop(NULL))
static int rt_lateness_null_out(void) { return gs_timer_lateness_get(F.rt, NULL); }
static int rt_lateness_null_rt(void)
{
    gs_timer_lateness l;
    return gs_timer_lateness_get(NULL, &l);
}

CASE(c_stats_null_rt, rt_stats_null_rt())
CASE(c_lateness_null_rt, rt_lateness_null_rt())
CASE(c_lateness_null_out, rt_lateness_null_out())
CASE(c_stats_null_out, rt_stats_null_out())
CASE(c_logger_null_rt, gs_set_logger(NULL, logcap_fn, &g_log))
CASE(c_logger_null_rt_fn, gs_set_logger(NULL, NULL, NULL))

static const entry runtime_table[] = {
    {"gs_runtime_start", "out NULL, opts NULL", GS_EINVAL, c_rtstart_null},
    {"gs_runtime_start", "workers GS_MAX_WORKERS + 1", GS_EINVAL, c_rtstart_workers},
    {"gs_runtime_start", "workers UINT_MAX", GS_EINVAL, c_rtstart_workers_max},
    {"gs_runtime_stop", "rt NULL", GS_EINVAL, c_rtstop_null},
    {"gs_runtime_stats_get", "rt NULL", GS_EINVAL, c_stats_null_rt},
    {"gs_runtime_stats_get", "out NULL", GS_EINVAL, c_stats_null_out},
    {"gs_timer_lateness_get", "rt NULL", GS_EINVAL, c_lateness_null_rt},
    {"gs_timer_lateness_get", "out NULL", GS_EINVAL, c_lateness_null_out},
    {"gs_set_logger", "rt NULL", GS_EINVAL, c_logger_null_rt},
    {"gs_set_logger", "rt NULL, fn NULL", GS_EINVAL, c_logger_null_rt_fn},
};

Test(badinput, runtime, .init = fx_setup, .fini = fx_teardown, .timeout = 30)
{
    run_table("runtime entries", runtime_table, N_OF(runtime_table));
}

/* ---- gs_start -------------------------------------------------------- */

static const gs_server_ops huge_state_ops = {.name = "huge", .state_size = GS_MSG_MAX + 1};
static const gs_server_ops max_state_ops = {.name = "max", .state_size = SIZE_MAX};

static gs_pid g_out_pid;
CASE(c_start_null_rt, gs_start(NULL, &b_ops, NULL, &g_out_pid))
CASE(c_start_null_ops, gs_start(F.rt, NULL, NULL, &g_out_pid))
CASE(c_start_huge_state, gs_start(F.rt, &huge_state_ops, NULL, &g_out_pid))
CASE(c_start_max_state, gs_start(F.rt, &max_state_ops, NULL, &g_out_pid))

static const entry start_table[] = {
    {"gs_start", "rt NULL", GS_EINVAL, c_start_null_rt},
    {"gs_start", "ops NULL", GS_EINVAL, c_start_null_ops},
    {"gs_start", "state_size GS_MSG_MAX + 1", GS_EINVAL, c_start_huge_state},
    {"gs_start", "state_size SIZE_MAX", GS_EINVAL, c_start_max_state},
};

Test(badinput, start, .init = fx_setup, .fini = fx_teardown, .timeout = 30)
{
    run_table("gs_start entries", start_table, N_OF(start_table));
    cr_expect_eq(g_out_pid, GS_NOPID, "a refused gs_start wrote a pid");
    /* out may be NULL */
    cr_assert_eq(gs_start(F.rt, &b_ops, NULL, NULL), GS_OK);
    /* A stopped server leaves the count a moment after gs_stop returns
     * (its slot is given back after the stop is answered): the servers
     * still_serving stopped may be counted for a while. */
    gs_runtime_stats st;
    int64_t end = now_ms() + 5000;
    do {
        cr_assert_eq(gs_runtime_stats_get(F.rt, &st), GS_OK);
        if (st.servers == 2)
            break;
        sleep_ms(1);
    } while (now_ms() < end);
    cr_expect_eq(st.servers, 2, "live servers: %" PRIu64 " (live + the one without out)",
                 st.servers);
}

/* ---- gs_cast / gs_cast_name ------------------------------------------ */

CASE(c_cast_null_rt, gs_cast(NULL, F.live, T_ECHO, NULL, 0))
CASE(c_cast_nopid, gs_cast(F.rt, GS_NOPID, T_ECHO, NULL, 0))
CASE(c_cast_stale, gs_cast(F.rt, F.stale, T_ECHO, NULL, 0))
CASE(c_cast_rnd0, gs_cast(F.rt, F.rnd[0], T_ECHO, NULL, 0))
CASE(c_cast_rnd1, gs_cast(F.rt, F.rnd[1], T_ECHO, NULL, 0))
CASE(c_cast_rnd2, gs_cast(F.rt, F.rnd[2], T_ECHO, NULL, 0))
CASE(c_cast_rnd3, gs_cast(F.rt, F.rnd[3], T_ECHO, NULL, 0))
CASE(c_cast_other_rt, gs_cast(F.rt, F.other, T_ECHO, NULL, 0))
CASE(c_cast_own_in_other, gs_cast(F.rt2, F.live, T_ECHO, NULL, 0))
CASE(c_cast_null_data, gs_cast(F.rt, F.live, T_ECHO, NULL, 1))
CASE(c_cast_rt_tag, gs_cast(F.rt, F.live, GS_TAG_RUNTIME_BASE, NULL, 0))
CASE(c_cast_tag_down, gs_cast(F.rt, F.live, GS_TAG_DOWN, NULL, 0))
CASE(c_cast_tag_max, gs_cast(F.rt, F.live, UINT32_MAX, NULL, 0))
CASE(c_cast_msgmax, gs_cast(F.rt, F.live, T_ECHO, g_small, GS_MSG_MAX + 1))
CASE(c_cast_sizemax, gs_cast(F.rt, F.live, T_ECHO, g_small, SIZE_MAX))
CASE(c_castn_null_rt, gs_cast_name(NULL, "x", T_ECHO, NULL, 0))
CASE(c_castn_null_name, gs_cast_name(F.rt, NULL, T_ECHO, NULL, 0))
CASE(c_castn_empty, gs_cast_name(F.rt, "", T_ECHO, NULL, 0))
CASE(c_castn_unknown, gs_cast_name(F.rt, "nobody", T_ECHO, NULL, 0))

static const entry cast_table[] = {
    {"gs_cast", "rt NULL", GS_EINVAL, c_cast_null_rt},
    {"gs_cast", "GS_NOPID", GS_ENOPROC, c_cast_nopid},
    {"gs_cast", "stale pid", GS_ENOPROC, c_cast_stale},
    {"gs_cast", "made-up pid 1", GS_ENOPROC, c_cast_rnd0},
    {"gs_cast", "made-up pid 2", GS_ENOPROC, c_cast_rnd1},
    {"gs_cast", "made-up pid 3", GS_ENOPROC, c_cast_rnd2},
    {"gs_cast", "pid UINT64_MAX", GS_ENOPROC, c_cast_rnd3},
    {"gs_cast", "pid of another runtime", GS_ENOPROC, c_cast_other_rt},
    {"gs_cast", "rt2 with a pid of rt", GS_ENOPROC, c_cast_own_in_other},
    {"gs_cast", "data NULL, len 1", GS_EINVAL, c_cast_null_data},
    {"gs_cast", "tag GS_TAG_RUNTIME_BASE", GS_EINVAL, c_cast_rt_tag},
    {"gs_cast", "tag GS_TAG_DOWN", GS_EINVAL, c_cast_tag_down},
    {"gs_cast", "tag UINT32_MAX", GS_EINVAL, c_cast_tag_max},
    {"gs_cast", "len GS_MSG_MAX + 1, 16-byte buffer", GS_EMSGSIZE, c_cast_msgmax},
    {"gs_cast", "len SIZE_MAX, 16-byte buffer", GS_EMSGSIZE, c_cast_sizemax},
    {"gs_cast_name", "rt NULL", GS_EINVAL, c_castn_null_rt},
    /* name NULL / empty: gs_whereis' GS_EINVAL ("bad name"), not a missing name */
    {"gs_cast_name", "name NULL", GS_EINVAL, c_castn_null_name},
    {"gs_cast_name", "name empty", GS_EINVAL, c_castn_empty},
    {"gs_cast_name", "unknown name", GS_ENOPROC, c_castn_unknown},
};

Test(badinput, cast, .init = fx_setup, .fini = fx_teardown, .timeout = 30)
{
    run_table("gs_cast entries", cast_table, N_OF(cast_table));
}

/* ---- gs_call / gs_call_name ------------------------------------------- */

static int64_t g_in = 3;
#define CALL(rt, pid, tag, data, len, reply, cap, tmo) gs_call(rt, pid, tag, data, len, reply, cap, NULL, tmo)

CASE(k_null_rt, CALL(NULL, F.live, T_ECHO, &g_in, 8, g_reply, 16, 1000))
CASE(k_nopid, CALL(F.rt, GS_NOPID, T_ECHO, &g_in, 8, g_reply, 16, 1000))
CASE(k_stale, CALL(F.rt, F.stale, T_ECHO, &g_in, 8, g_reply, 16, 1000))
CASE(k_rnd0, CALL(F.rt, F.rnd[0], T_ECHO, &g_in, 8, g_reply, 16, 1000))
CASE(k_rnd3, CALL(F.rt, F.rnd[3], T_ECHO, &g_in, 8, g_reply, 16, 1000))
CASE(k_other_rt, CALL(F.rt, F.other, T_ECHO, &g_in, 8, g_reply, 16, 1000))
CASE(k_null_data, CALL(F.rt, F.live, T_ECHO, NULL, 8, g_reply, 16, 1000))
CASE(k_null_reply, CALL(F.rt, F.live, T_ECHO, &g_in, 8, NULL, 16, 1000))
CASE(k_tmo1, CALL(F.rt, F.live, T_ECHO, &g_in, 8, g_reply, 16, BAD_TIMEOUT_1))
CASE(k_tmo2, CALL(F.rt, F.live, T_ECHO, &g_in, 8, g_reply, 16, BAD_TIMEOUT_2))
CASE(k_tmo3, CALL(F.rt, F.live, T_ECHO, &g_in, 8, g_reply, 16, BAD_TIMEOUT_3))
CASE(k_tmo4, CALL(F.rt, F.live, T_ECHO, &g_in, 8, g_reply, 16, BAD_TIMEOUT_4))
CASE(k_tmo_max_ok, CALL(F.rt, F.live, T_ECHO, &g_in, 8, g_reply, 16, GS_TIMEOUT_MAX_MS))
CASE(k_rt_tag, CALL(F.rt, F.live, GS_TAG_TIMEOUT, &g_in, 8, g_reply, 16, 1000))
CASE(k_msgmax, CALL(F.rt, F.live, T_ECHO, g_small, GS_MSG_MAX + 1, g_reply, 16, 1000))
CASE(k_sizemax, CALL(F.rt, F.live, T_ECHO, g_small, SIZE_MAX, g_reply, 16, 1000))
CASE(k_small_cap, CALL(F.rt, F.live, T_ECHO, &g_in, 8, g_reply, 3, 1000))
CASE(k_zero_cap, CALL(F.rt, F.live, T_ECHO, &g_in, 8, NULL, 0, 1000))
CASE(k_name_null_rt, gs_call_name(NULL, "x", T_ECHO, NULL, 0, NULL, 0, NULL, 1000))
CASE(k_name_null, gs_call_name(F.rt, NULL, T_ECHO, NULL, 0, NULL, 0, NULL, 1000))
CASE(k_name_unknown, gs_call_name(F.rt, "nobody", T_ECHO, NULL, 0, NULL, 0, NULL, 1000))

static int probe(gs_runtime *rt, gs_pid pid, int which, gs_pid arg)
{
    probe_req p = {which, 0, arg};
    int inner = 7777;
    size_t len = 0;
    int rc = gs_call(rt, pid, T_PROBE, &p, sizeof p, &inner, sizeof inner, &len, 5000);
    if (rc != GS_OK)
        return 10000 + rc; /* the probe itself failed: never a status code */
    return inner;
}

CASE(p_call_self, probe(F.rt, F.live, P_CALL_SELF, 0))

static const entry call_table[] = {
    {"gs_call", "rt NULL", GS_EINVAL, k_null_rt},
    {"gs_call", "GS_NOPID", GS_ENOPROC, k_nopid},
    {"gs_call", "stale pid", GS_ENOPROC, k_stale},
    {"gs_call", "made-up pid", GS_ENOPROC, k_rnd0},
    {"gs_call", "pid UINT64_MAX", GS_ENOPROC, k_rnd3},
    {"gs_call", "pid of another runtime", GS_ENOPROC, k_other_rt},
    {"gs_call", "data NULL, len 8", GS_EINVAL, k_null_data},
    {"gs_call", "reply NULL, reply_cap 16", GS_EINVAL, k_null_reply},
    {"gs_call", "timeout -2", GS_EINVAL, k_tmo1},
    {"gs_call", "timeout INT_MIN", GS_EINVAL, k_tmo2},
    {"gs_call", "timeout GS_TIMEOUT_MAX_MS + 1", GS_EINVAL, k_tmo3},
    {"gs_call", "timeout INT_MAX", GS_EINVAL, k_tmo4},
    {"gs_call", "timeout GS_TIMEOUT_MAX_MS (valid)", GS_OK, k_tmo_max_ok},
    {"gs_call", "tag GS_TAG_TIMEOUT", GS_EINVAL, k_rt_tag},
    {"gs_call", "len GS_MSG_MAX + 1, 16-byte buffer", GS_EMSGSIZE, k_msgmax},
    {"gs_call", "len SIZE_MAX, 16-byte buffer", GS_EMSGSIZE, k_sizemax},
    {"gs_call", "8-byte reply, reply_cap 3", GS_EMSGSIZE, k_small_cap},
    {"gs_call", "8-byte reply, reply NULL, reply_cap 0", GS_EMSGSIZE, k_zero_cap},
    {"gs_call", "to itself from handle_call", GS_EDEADLK, p_call_self},
    {"gs_call_name", "rt NULL", GS_EINVAL, k_name_null_rt},
    {"gs_call_name", "name NULL", GS_EINVAL, k_name_null},
    {"gs_call_name", "unknown name", GS_ENOPROC, k_name_unknown},
};

Test(badinput, call, .init = fx_setup, .fini = fx_teardown, .timeout = 30)
{
    run_table("gs_call entries", call_table, N_OF(call_table));
}

/* ---- gs_reply ----------------------------------------------------------- */

static gs_from g_from_timed_out, g_from_stopped, g_from_other_rt;

CASE(r_null_rt, gs_reply(NULL, F.answered, NULL, 0))
CASE(r_zero, gs_reply(F.rt, (gs_from){{0, 0}}, NULL, 0))
CASE(r_ones, gs_reply(F.rt, (gs_from){{UINT64_MAX, UINT64_MAX}}, NULL, 0))
CASE(r_garbage, gs_reply(F.rt, (gs_from){{0x123456789abcdefULL, 0xfedcba987654321ULL}}, NULL, 0))
CASE(r_other_rt, gs_reply(F.rt, g_from_other_rt, NULL, 0))
CASE(r_null_data, gs_reply(F.rt, F.answered, NULL, 4))
CASE(r_msgmax, gs_reply(F.rt, F.answered, g_small, GS_MSG_MAX + 1))
CASE(r_sizemax, gs_reply(F.rt, F.answered, g_small, SIZE_MAX))
CASE(r_answered, gs_reply(F.rt, F.answered, g_small, 8))
CASE(r_answered_again, gs_reply(F.rt, F.answered, g_small, 8))
CASE(r_timed_out, gs_reply(F.rt, g_from_timed_out, g_small, 8))
CASE(r_stopped, gs_reply(F.rt, g_from_stopped, g_small, 8))

static const entry reply_table[] = {
    {"gs_reply", "rt NULL", GS_EINVAL, r_null_rt},
    {"gs_reply", "from {0, 0}", GS_EINVAL, r_zero},
    {"gs_reply", "from all ones", GS_EINVAL, r_ones},
    {"gs_reply", "from garbage", GS_EINVAL, r_garbage},
    /* no call of this runtime produced it */
    {"gs_reply", "from of another runtime's call", GS_EINVAL, r_other_rt},
    {"gs_reply", "data NULL, len 4", GS_EINVAL, r_null_data},
    {"gs_reply", "len GS_MSG_MAX + 1, 16-byte buffer", GS_EMSGSIZE, r_msgmax},
    {"gs_reply", "len SIZE_MAX, 16-byte buffer", GS_EMSGSIZE, r_sizemax},
    {"gs_reply", "from already answered", GS_ENOENT, r_answered},
    {"gs_reply", "from already answered, again", GS_ENOENT, r_answered_again},
    {"gs_reply", "from whose caller timed out", GS_ENOENT, r_timed_out},
    {"gs_reply", "from of a call whose server stopped", GS_ENOENT, r_stopped},
};

/* A call waiting on another thread, so that the test thread can answer
 * or abandon its from. */
typedef struct waiting_call {
    gs_runtime *rt;
    gs_pid pid;
    int timeout_ms;
    int rc;
    int64_t r;
    pthread_t th;
} waiting_call;

static void *waiting_call_main(void *arg)
{
    waiting_call *w = arg;
    w->rc = gs_call(w->rt, w->pid, T_DEFER, NULL, 0, &w->r, sizeof w->r, NULL, w->timeout_ms);
    return NULL;
}

/* Starts a deferred call on a thread; returns its from once the server
 * holds it. */
static gs_from start_waiting_call(waiting_call *w, gs_runtime *rt, gs_pid pid, int timeout_ms)
{
    memset(w, 0, sizeof *w);
    w->rt = rt;
    w->pid = pid;
    w->timeout_ms = timeout_ms;
    int before = atomic_load(&g_deferred);
    cr_assert_eq(pthread_create(&w->th, NULL, waiting_call_main, w), 0);
    cr_assert(wait_int_ge(&g_deferred, before + 1, 5000), "the server never got the call");
    return g_kept_from;
}

Test(badinput, reply, .init = fx_setup, .fini = fx_teardown, .timeout = 30)
{
    waiting_call w;
    /* An answered from: answered once from here (GS_OK), the caller got it. */
    F.answered = start_waiting_call(&w, F.rt, F.live, 10000);
    int64_t v = 99;
    cr_assert_eq(gs_reply(F.rt, F.answered, &v, sizeof v), GS_OK);
    pthread_join(w.th, NULL);
    cr_assert_eq(w.rc, GS_OK);
    cr_assert_eq(w.r, 99);

    /* A from whose caller gave up (50 ms timeout). */
    g_from_timed_out = start_waiting_call(&w, F.rt, F.live, 50);
    pthread_join(w.th, NULL);
    cr_assert_eq(w.rc, GS_ETIMEDOUT);

    /* A from of a call whose server stopped before answering. */
    gs_pid victim = start_ok(F.rt, &b_ops, NULL);
    g_from_stopped = start_waiting_call(&w, F.rt, victim, 10000);
    stop_ok(F.rt, victim);
    pthread_join(w.th, NULL);
    cr_assert_eq(w.rc, GS_ENOPROC, "pending call of a stopped server: %d", w.rc);

    /* A from of another runtime's call (answered there afterwards). */
    g_from_other_rt = start_waiting_call(&w, F.rt2, F.other, 10000);

    run_table("gs_reply entries", reply_table, N_OF(reply_table));

    cr_assert_eq(gs_reply(F.rt2, g_from_other_rt, &v, sizeof v), GS_OK);
    pthread_join(w.th, NULL);
    cr_assert_eq(w.rc, GS_OK, "the other runtime's call: %d", w.rc);

    /* Twice from inside handle_call: the second is GS_ENOENT. The first
     * wakes us: the codes are read once the server has stored both. */
    size_t len = 99;
    atomic_store(&g_reply_twice_done, 0);
    cr_assert_eq(gs_call(F.rt, F.live, T_REPLY_TWICE, NULL, 0, NULL, 0, &len, 5000), GS_OK);
    cr_assert(wait_int_eq(&g_reply_twice_done, 1, 5000));
    cr_expect_eq(len, 0);
    cr_expect_eq(atomic_load(&g_reply_twice_rc[0]), GS_OK);
    cr_expect_eq(atomic_load(&g_reply_twice_rc[1]), GS_ENOENT,
                 "gs_reply(from twice, inside handle_call): second returned %d (%s)",
                 atomic_load(&g_reply_twice_rc[1]), gs_strerror(atomic_load(&g_reply_twice_rc[1])));
    still_serving("gs_reply twice inside handle_call");
}

/* The header: gs_reply returns GS_ENOENT when "there was none any more
 * (already answered, the caller timed out, ...)", except for a reply to
 * the call being handled, from its own handle_call, which gives GS_OK so
 * that `return gs_reply(...)` cannot crash a server. Here the caller gave
 * up before handle_call even ran (the server was busy), and handle_call
 * then replies: GS_OK, and the reply is dropped. */
Test(badinput, reply_in_handle_call_after_caller_gave_up, .init = fx_setup, .fini = fx_teardown,
     .timeout = 30)
{
    atomic_store(&g_reply_late_rc, 4242);
    cr_assert_eq(gs_cast(F.rt, F.live, T_SLEEP, NULL, 0), GS_OK);
    int rc = gs_call(F.rt, F.live, T_REPLY_LATE, NULL, 0, NULL, 0, NULL, 20);
    cr_assert_eq(rc, GS_ETIMEDOUT, "the call should have timed out: %d", rc);
    int64_t end = now_ms() + 5000;
    while (atomic_load(&g_reply_late_rc) == 4242 && now_ms() < end)
        sleep_ms(5);
    int late = atomic_load(&g_reply_late_rc);
    cr_expect_eq(late, GS_OK,
                 "gs_reply(from whose caller timed out, inside its handle_call): returned %d (%s), "
                 "the header documents GS_OK for this case",
                 late, gs_strerror(late));
    still_serving("a reply in handle_call after the caller gave up");
}

/* ---- gs_stop / gs_kill ---------------------------------------------------- */

CASE(s_null_rt, gs_stop(NULL, F.live, GS_NORMAL, 1000))
CASE(s_nopid, gs_stop(F.rt, GS_NOPID, GS_NORMAL, 1000))
CASE(s_stale, gs_stop(F.rt, F.stale, GS_NORMAL, 1000))
CASE(s_rnd, gs_stop(F.rt, F.rnd[1], GS_NORMAL, 1000))
CASE(s_rnd3, gs_stop(F.rt, F.rnd[3], GS_NORMAL, 1000))
CASE(s_other_rt, gs_stop(F.rt, F.other, GS_NORMAL, 1000))
CASE(s_tmo1, gs_stop(F.rt, F.live, GS_NORMAL, BAD_TIMEOUT_1))
CASE(s_tmo2, gs_stop(F.rt, F.live, GS_NORMAL, BAD_TIMEOUT_2))
CASE(s_tmo3, gs_stop(F.rt, F.live, GS_NORMAL, BAD_TIMEOUT_3))
CASE(s_tmo4, gs_stop(F.rt, F.live, GS_NORMAL, BAD_TIMEOUT_4))
CASE(s_self, probe(F.rt, F.live, P_STOP_SELF, 0))
CASE(s_rtstop_inside, probe(F.rt, F.live, P_RUNTIME_STOP, 0))
CASE(x_null_rt, gs_kill(NULL, F.live))
CASE(x_nopid, gs_kill(F.rt, GS_NOPID))
CASE(x_stale, gs_kill(F.rt, F.stale))
CASE(x_rnd, gs_kill(F.rt, F.rnd[2]))
CASE(x_other_rt, gs_kill(F.rt, F.other))
CASE(x_self, probe(F.rt, F.live, P_KILL_SELF, 0))

static const entry stop_table[] = {
    {"gs_stop", "rt NULL", GS_EINVAL, s_null_rt},
    {"gs_stop", "GS_NOPID", GS_ENOPROC, s_nopid},
    {"gs_stop", "stale pid", GS_ENOPROC, s_stale},
    {"gs_stop", "made-up pid", GS_ENOPROC, s_rnd},
    {"gs_stop", "pid UINT64_MAX", GS_ENOPROC, s_rnd3},
    {"gs_stop", "pid of another runtime", GS_ENOPROC, s_other_rt},
    {"gs_stop", "timeout -2", GS_EINVAL, s_tmo1},
    {"gs_stop", "timeout INT_MIN", GS_EINVAL, s_tmo2},
    {"gs_stop", "timeout GS_TIMEOUT_MAX_MS + 1", GS_EINVAL, s_tmo3},
    {"gs_stop", "timeout INT_MAX", GS_EINVAL, s_tmo4},
    {"gs_stop", "itself, from its handle_call", GS_EDEADLK, s_self},
    {"gs_runtime_stop", "from inside a callback", GS_EDEADLK, s_rtstop_inside},
    {"gs_kill", "rt NULL", GS_EINVAL, x_null_rt},
    {"gs_kill", "GS_NOPID", GS_ENOPROC, x_nopid},
    {"gs_kill", "stale pid", GS_ENOPROC, x_stale},
    {"gs_kill", "made-up pid", GS_ENOPROC, x_rnd},
    {"gs_kill", "pid of another runtime", GS_ENOPROC, x_other_rt},
    {"gs_kill", "itself, from its handle_call", GS_EDEADLK, x_self},
};

typedef struct stopper {
    gs_pid pid;
    int rc;
    pthread_t th;
} stopper;

static void *stopper_main(void *arg)
{
    stopper *s = arg;
    s->rc = gs_stop(F.rt, s->pid, GS_NORMAL, 10000);
    return NULL;
}

Test(badinput, stop_and_kill, .init = fx_setup, .fini = fx_teardown, .timeout = 30)
{
    run_table("gs_stop / gs_kill entries", stop_table, N_OF(stop_table));

    /* Double stop, one after the other: the second is GS_ENOPROC. */
    gs_pid p = start_ok(F.rt, &b_ops, NULL);
    cr_expect_eq(gs_stop(F.rt, p, GS_NORMAL, 5000), GS_OK);
    cr_expect_eq(gs_stop(F.rt, p, GS_NORMAL, 5000), GS_ENOPROC, "second gs_stop");
    cr_expect_eq(gs_kill(F.rt, p), GS_ENOPROC, "gs_kill after gs_stop");

    /* Double stop, concurrently (the server busy for 200 ms so that both
     * requests are queued): both return GS_OK once it has terminated. */
    p = start_ok(F.rt, &b_ops, NULL);
    cr_assert_eq(gs_cast(F.rt, p, T_SLEEP, NULL, 0), GS_OK);
    stopper s1 = {p, 99, 0}, s2 = {p, 99, 0};
    cr_assert_eq(pthread_create(&s1.th, NULL, stopper_main, &s1), 0);
    cr_assert_eq(pthread_create(&s2.th, NULL, stopper_main, &s2), 0);
    pthread_join(s1.th, NULL);
    pthread_join(s2.th, NULL);
    cr_expect_eq(s1.rc, GS_OK, "concurrent gs_stop 1: %d", s1.rc);
    cr_expect_eq(s2.rc, GS_OK, "concurrent gs_stop 2: %d", s2.rc);

    /* Double kill: the second is GS_ENOPROC once the first took effect. */
    p = start_ok(F.rt, &b_ops, NULL);
    cr_expect_eq(gs_kill(F.rt, p), GS_OK);
    int64_t r;
    cr_expect_eq(call_i64(F.rt, p, T_ECHO, 1, &r, 5000), GS_ENOPROC, "call after gs_kill");
    cr_expect_eq(gs_kill(F.rt, p), GS_ENOPROC, "second gs_kill");
    cr_expect_eq(gs_stop(F.rt, p, GS_NORMAL, 1000), GS_ENOPROC, "gs_stop after gs_kill");
    still_serving("double stop / kill");
}

/* ---- timers ----------------------------------------------------------- */

static gs_timer g_tout;
static gs_timer g_fired_timer, g_cancelled_timer, g_stopped_timer;

CASE(t_null_rt, gs_send_after(NULL, F.live, 7, NULL, 0, 10, &g_tout))
CASE(t_nopid, gs_send_after(F.rt, GS_NOPID, 7, NULL, 0, 10, &g_tout))
CASE(t_stale, gs_send_after(F.rt, F.stale, 7, NULL, 0, 10, &g_tout))
CASE(t_rnd, gs_send_after(F.rt, F.rnd[0], 7, NULL, 0, 10, &g_tout))
CASE(t_other_rt, gs_send_after(F.rt, F.other, 7, NULL, 0, 10, &g_tout))
CASE(t_null_data, gs_send_after(F.rt, F.live, 7, NULL, 3, 10, &g_tout))
CASE(t_rt_tag, gs_send_after(F.rt, F.live, GS_TAG_TIMEOUT, NULL, 0, 10, &g_tout))
CASE(t_infinity, gs_send_after(F.rt, F.live, 7, NULL, 0, GS_INFINITY, &g_tout))
CASE(t_tmo1, gs_send_after(F.rt, F.live, 7, NULL, 0, BAD_TIMEOUT_1, &g_tout))
CASE(t_tmo2, gs_send_after(F.rt, F.live, 7, NULL, 0, BAD_TIMEOUT_2, &g_tout))
CASE(t_tmo3, gs_send_after(F.rt, F.live, 7, NULL, 0, BAD_TIMEOUT_3, &g_tout))
CASE(t_tmo4, gs_send_after(F.rt, F.live, 7, NULL, 0, BAD_TIMEOUT_4, &g_tout))
CASE(t_msgmax, gs_send_after(F.rt, F.live, 7, g_small, GS_MSG_MAX + 1, 10, &g_tout))
CASE(t_sizemax, gs_send_after(F.rt, F.live, 7, g_small, SIZE_MAX, 10, &g_tout))
CASE(t_null_out, gs_send_after(F.rt, F.live, 7, NULL, 0, 0, NULL))
CASE(u_null_rt, gs_cancel_timer(NULL, g_cancelled_timer))
CASE(u_zero, gs_cancel_timer(F.rt, 0))
CASE(u_ones, gs_cancel_timer(F.rt, UINT64_MAX))
CASE(u_garbage, gs_cancel_timer(F.rt, 0x0123456789abcdefULL))
CASE(u_pid_as_timer, gs_cancel_timer(F.rt, F.live))
CASE(u_other_rt, gs_cancel_timer(F.rt, F.other_timer))
CASE(u_fired, gs_cancel_timer(F.rt, g_fired_timer))
CASE(u_cancelled, gs_cancel_timer(F.rt, g_cancelled_timer))
CASE(u_stopped, gs_cancel_timer(F.rt, g_stopped_timer))

static const entry timer_table[] = {
    {"gs_send_after", "rt NULL", GS_EINVAL, t_null_rt},
    {"gs_send_after", "GS_NOPID", GS_ENOPROC, t_nopid},
    {"gs_send_after", "stale pid", GS_ENOPROC, t_stale},
    {"gs_send_after", "made-up pid", GS_ENOPROC, t_rnd},
    {"gs_send_after", "pid of another runtime", GS_ENOPROC, t_other_rt},
    {"gs_send_after", "data NULL, len 3", GS_EINVAL, t_null_data},
    {"gs_send_after", "tag GS_TAG_TIMEOUT", GS_EINVAL, t_rt_tag},
    {"gs_send_after", "delay GS_INFINITY (negative)", GS_EINVAL, t_infinity},
    {"gs_send_after", "delay -2", GS_EINVAL, t_tmo1},
    {"gs_send_after", "delay INT_MIN", GS_EINVAL, t_tmo2},
    {"gs_send_after", "delay GS_TIMEOUT_MAX_MS + 1", GS_EINVAL, t_tmo3},
    {"gs_send_after", "delay INT_MAX", GS_EINVAL, t_tmo4},
    {"gs_send_after", "len GS_MSG_MAX + 1, 16-byte buffer", GS_EMSGSIZE, t_msgmax},
    {"gs_send_after", "len SIZE_MAX, 16-byte buffer", GS_EMSGSIZE, t_sizemax},
    {"gs_send_after", "out NULL (allowed)", GS_OK, t_null_out},
    {"gs_cancel_timer", "rt NULL", GS_EINVAL, u_null_rt},
    {"gs_cancel_timer", "timer 0", GS_ENOENT, u_zero},
    {"gs_cancel_timer", "timer UINT64_MAX", GS_ENOENT, u_ones},
    {"gs_cancel_timer", "garbage timer", GS_ENOENT, u_garbage},
    {"gs_cancel_timer", "a pid as timer", GS_ENOENT, u_pid_as_timer},
    {"gs_cancel_timer", "a pending timer of another runtime", GS_ENOENT, u_other_rt},
    {"gs_cancel_timer", "a timer that fired", GS_ENOENT, u_fired},
    {"gs_cancel_timer", "a timer already cancelled", GS_ENOENT, u_cancelled},
    {"gs_cancel_timer", "a timer whose server stopped", GS_ENOENT, u_stopped},
};

Test(badinput, timers, .init = fx_setup, .fini = fx_teardown, .timeout = 30)
{
    cr_assert_eq(gs_send_after(F.rt, F.live, 7, NULL, 0, 0, &g_fired_timer), GS_OK);
    cr_assert_eq(gs_send_after(F.rt, F.live, 7, NULL, 0, 100000, &g_cancelled_timer), GS_OK);
    cr_assert_eq(gs_cancel_timer(F.rt, g_cancelled_timer), GS_OK);
    gs_pid p = start_ok(F.rt, &b_ops, NULL);
    cr_assert_eq(gs_send_after(F.rt, p, 7, NULL, 0, 100000, &g_stopped_timer), GS_OK);
    stop_ok(F.rt, p);
    sleep_ms(50); /* the 0 ms timer fires */
    int64_t r;
    cr_assert_eq(call_i64(F.rt, F.live, T_ECHO, 0, &r, 5000), GS_OK);
    g_tout = 0;
    run_table("timer entries", timer_table, N_OF(timer_table));
    /* The other runtime's timer is still pending there. */
    cr_expect_eq(gs_cancel_timer(F.rt2, F.other_timer), GS_OK,
                 "rt2's own timer after rt refused to cancel it");
}

/* ---- monitors --------------------------------------------------------- */

static gs_ref g_rout, g_demonitored_ref;

CASE(m_null_rt, gs_monitor(NULL, F.live, F.live, &g_rout))
CASE(m_target_nopid, gs_monitor(F.rt, F.live, GS_NOPID, &g_rout))
CASE(m_watcher_nopid, gs_monitor(F.rt, GS_NOPID, F.live, &g_rout))
CASE(m_watcher_stale, gs_monitor(F.rt, F.stale, F.live, &g_rout))
CASE(m_watcher_rnd, gs_monitor(F.rt, F.rnd[1], F.live, &g_rout))
CASE(m_watcher_other, gs_monitor(F.rt, F.other, F.live, &g_rout))
CASE(d_null_rt, gs_demonitor(NULL, g_demonitored_ref))
CASE(d_zero, gs_demonitor(F.rt, 0))
CASE(d_ones, gs_demonitor(F.rt, UINT64_MAX))
CASE(d_garbage, gs_demonitor(F.rt, 0x0fedcba987654321ULL))
CASE(d_other_rt, gs_demonitor(F.rt, F.other_ref))
CASE(d_twice, gs_demonitor(F.rt, g_demonitored_ref))

static const entry monitor_table[] = {
    {"gs_monitor", "rt NULL", GS_EINVAL, m_null_rt},
    {"gs_monitor", "target GS_NOPID", GS_EINVAL, m_target_nopid},
    {"gs_monitor", "watcher GS_NOPID", GS_ENOPROC, m_watcher_nopid},
    {"gs_monitor", "watcher stale", GS_ENOPROC, m_watcher_stale},
    {"gs_monitor", "watcher made up", GS_ENOPROC, m_watcher_rnd},
    {"gs_monitor", "watcher of another runtime", GS_ENOPROC, m_watcher_other},
    /* not in the header's list for gs_demonitor: GS_EINVAL as everywhere */
    {"gs_demonitor", "rt NULL", GS_EINVAL, d_null_rt},
    {"gs_demonitor", "ref 0", GS_ENOENT, d_zero},
    {"gs_demonitor", "ref UINT64_MAX", GS_ENOENT, d_ones},
    {"gs_demonitor", "garbage ref", GS_ENOENT, d_garbage},
    {"gs_demonitor", "a live monitor of another runtime", GS_ENOENT, d_other_rt},
    {"gs_demonitor", "already demonitored", GS_ENOENT, d_twice},
};

Test(badinput, monitors, .init = fx_setup, .fini = fx_teardown, .timeout = 30)
{
    gs_pid t = start_ok(F.rt, &b_ops, NULL);
    cr_assert_eq(gs_monitor(F.rt, F.live, t, &g_demonitored_ref), GS_OK);
    cr_assert_eq(gs_demonitor(F.rt, g_demonitored_ref), GS_OK);
    run_table("monitor entries", monitor_table, N_OF(monitor_table));
    /* A dead or made-up target is not an error (DOWN comes at once). */
    gs_ref r;
    cr_expect_eq(gs_monitor(F.rt, F.live, F.stale, &r), GS_OK, "monitor of a stale pid");
    cr_expect_eq(gs_monitor(F.rt, F.live, F.rnd[0], &r), GS_OK, "monitor of a made-up pid");
    cr_expect_eq(gs_demonitor(F.rt2, F.other_ref), GS_OK, "rt2's own monitor");
    stop_ok(F.rt, t);
    still_serving("monitors");
}

/* ---- callbacks-only functions with NULL ctx, and from inside ---------- */

CASE(l_null_ctx, gs_link(NULL, F.live))
CASE(l_unlink_null_ctx, gs_unlink(NULL, F.live))
CASE(l_self, probe(F.rt, F.live, P_LINK_SELF, 0))
CASE(l_nopid, probe(F.rt, F.live, P_LINK_NOPID, 0))
CASE(l_stale, probe(F.rt, F.live, P_LINK_STALE, F.stale))
CASE(l_other_rt, probe(F.rt, F.live, P_LINK_OTHER_RT, F.other))
CASE(l_unlink_never, probe(F.rt, F.live, P_UNLINK_NEVER, F.stale))
CASE(l_idle_bad, probe(F.rt, F.live, P_IDLE_BAD, 0))

static const entry ctx_table[] = {
    {"gs_link", "ctx NULL", GS_EINVAL, l_null_ctx},
    {"gs_unlink", "ctx NULL", GS_EINVAL, l_unlink_null_ctx},
    {"gs_link", "to itself", GS_EINVAL, l_self},
    {"gs_link", "GS_NOPID", GS_ENOPROC, l_nopid},
    {"gs_link", "stale pid", GS_ENOPROC, l_stale},
    {"gs_link", "pid of another runtime", GS_ENOPROC, l_other_rt},
    {"gs_unlink", "never linked", GS_OK, l_unlink_never},
    {"gs_set_idle_timeout", "0, -2, INT_MIN (ignored)", GS_OK, l_idle_bad},
};

Test(badinput, callbacks_only, .init = fx_setup, .fini = fx_teardown, .timeout = 30)
{
    /* void / value functions with NULL ctx must not crash */
    gs_set_exit_reason(NULL, GS_SHUTDOWN);
    gs_trap_exits(NULL, 1);
    gs_set_idle_timeout(NULL, 10);
    cr_expect_eq(gs_self(NULL), GS_NOPID);
    cr_expect_null(gs_ctx_runtime(NULL));
    atomic_store(&g_idle_msgs, 0);
    run_table("callback-only entries", ctx_table, N_OF(ctx_table));
    sleep_ms(150);
    cr_expect_eq(atomic_load(&g_idle_msgs), 0, "an ignored idle timeout produced %d messages",
                 atomic_load(&g_idle_msgs));
}

/* ---- names ------------------------------------------------------------ */

static char g_long_name[GS_NAME_MAX + 2];
static char g_max_name[GS_NAME_MAX + 1];
static gs_pid g_wout;

CASE(n_reg_null_rt, gs_register(NULL, "a", F.live))
CASE(n_reg_null_name, gs_register(F.rt, NULL, F.live))
CASE(n_reg_empty, gs_register(F.rt, "", F.live))
CASE(n_reg_long, gs_register(F.rt, g_long_name, F.live))
CASE(n_reg_nopid, gs_register(F.rt, "b", GS_NOPID))
CASE(n_reg_stale, gs_register(F.rt, "b", F.stale))
CASE(n_reg_rnd, gs_register(F.rt, "b", F.rnd[0]))
CASE(n_reg_other, gs_register(F.rt, "b", F.other))
CASE(n_reg_taken, gs_register(F.rt, "taken", F.live))
CASE(n_reg_max_ok, gs_register(F.rt, g_max_name, F.live))
CASE(n_unreg_null_rt, gs_unregister(NULL, "taken"))
CASE(n_unreg_null, gs_unregister(F.rt, NULL))
CASE(n_unreg_empty, gs_unregister(F.rt, ""))
CASE(n_unreg_long, gs_unregister(F.rt, g_long_name))
CASE(n_unreg_unknown, gs_unregister(F.rt, "nobody"))
CASE(n_unreg_gone, gs_unregister(F.rt, "gone"))
CASE(n_where_null_rt, gs_whereis(NULL, "taken", &g_wout))
CASE(n_where_null_out, gs_whereis(F.rt, "taken", NULL))
CASE(n_where_null, gs_whereis(F.rt, NULL, &g_wout))
CASE(n_where_long, gs_whereis(F.rt, g_long_name, &g_wout))
CASE(n_where_unknown, gs_whereis(F.rt, "nobody", &g_wout))
CASE(n_where_dead, gs_whereis(F.rt, "dead", &g_wout))
CASE(n_cast_dead, gs_cast_name(F.rt, "dead", T_ECHO, NULL, 0))
CASE(n_call_dead, gs_call_name(F.rt, "dead", T_ECHO, NULL, 0, NULL, 0, NULL, 1000))
CASE(n_cast_bad, gs_cast_name(F.rt, "taken", GS_TAG_EXIT, NULL, 0))
CASE(n_call_bad_tmo, gs_call_name(F.rt, "taken", T_ECHO, NULL, 0, NULL, 0, NULL, BAD_TIMEOUT_2))
CASE(n_cast_size, gs_cast_name(F.rt, "taken", T_ECHO, g_small, SIZE_MAX))

static const entry name_table[] = {
    {"gs_register", "rt NULL", GS_EINVAL, n_reg_null_rt},
    {"gs_register", "name NULL", GS_EINVAL, n_reg_null_name},
    {"gs_register", "name empty", GS_EINVAL, n_reg_empty},
    {"gs_register", "name GS_NAME_MAX + 1 bytes", GS_EINVAL, n_reg_long},
    {"gs_register", "GS_NOPID", GS_ENOPROC, n_reg_nopid},
    {"gs_register", "stale pid", GS_ENOPROC, n_reg_stale},
    {"gs_register", "made-up pid", GS_ENOPROC, n_reg_rnd},
    {"gs_register", "pid of another runtime", GS_ENOPROC, n_reg_other},
    {"gs_register", "name taken", GS_EEXIST, n_reg_taken},
    {"gs_register", "name GS_NAME_MAX bytes (valid)", GS_OK, n_reg_max_ok},
    {"gs_unregister", "rt NULL", GS_EINVAL, n_unreg_null_rt},
    {"gs_unregister", "name NULL", GS_EINVAL, n_unreg_null},
    {"gs_unregister", "name empty", GS_EINVAL, n_unreg_empty},
    {"gs_unregister", "name too long", GS_EINVAL, n_unreg_long},
    {"gs_unregister", "unknown name", GS_ENOENT, n_unreg_unknown},
    {"gs_unregister", "name already unregistered", GS_ENOENT, n_unreg_gone},
    {"gs_whereis", "rt NULL", GS_EINVAL, n_where_null_rt},
    {"gs_whereis", "out NULL", GS_EINVAL, n_where_null_out},
    {"gs_whereis", "name NULL", GS_EINVAL, n_where_null},
    {"gs_whereis", "name too long", GS_EINVAL, n_where_long},
    {"gs_whereis", "unknown name", GS_ENOENT, n_where_unknown},
    {"gs_whereis", "name of a stopped server", GS_ENOENT, n_where_dead},
    {"gs_cast_name", "name of a stopped server", GS_ENOPROC, n_cast_dead},
    {"gs_call_name", "name of a stopped server", GS_ENOPROC, n_call_dead},
    {"gs_cast_name", "runtime tag", GS_EINVAL, n_cast_bad},
    {"gs_call_name", "timeout INT_MIN", GS_EINVAL, n_call_bad_tmo},
    {"gs_cast_name", "len SIZE_MAX, 16-byte buffer", GS_EMSGSIZE, n_cast_size},
};

Test(badinput, names, .init = fx_setup, .fini = fx_teardown, .timeout = 30)
{
    memset(g_long_name, 'n', GS_NAME_MAX + 1);
    g_long_name[GS_NAME_MAX + 1] = '\0';
    memset(g_max_name, 'm', GS_NAME_MAX);
    g_max_name[GS_NAME_MAX] = '\0';
    cr_assert_eq(gs_register(F.rt, "taken", F.live), GS_OK);
    cr_assert_eq(gs_register(F.rt, "gone", F.live), GS_OK);
    cr_assert_eq(gs_unregister(F.rt, "gone"), GS_OK);
    gs_pid d = start_ok(F.rt, &b_ops, NULL);
    cr_assert_eq(gs_register(F.rt, "dead", d), GS_OK);
    stop_ok(F.rt, d);
    run_table("name entries", name_table, N_OF(name_table));
    gs_pid w = GS_NOPID;
    cr_expect_eq(gs_whereis(F.rt, "taken", &w), GS_OK);
    cr_expect_eq(w, F.live);
}

/* ---- supervisor --------------------------------------------------------- */

static const gs_child_spec g_child = {"c1", &b_ops, NULL, GS_PERMANENT, 1000, NULL};
static gs_sup_spec g_spec_bad;
static gs_pid g_sup, g_sout;

static int sup_with(void (*mut)(gs_sup_spec *, gs_child_spec *))
{
    gs_child_spec ch[2] = {g_child, g_child};
    ch[1].id = "c2";
    gs_sup_spec s = {GS_ONE_FOR_ONE, 3, 1000, ch, 2, 0};
    mut(&s, ch);
    gs_pid p = GS_NOPID;
    int rc = gs_supervisor_start(F.rt, &s, &p);
    if (rc == GS_OK)
        gs_stop(F.rt, p, GS_SHUTDOWN, 5000);
    return rc;
}

static void mu_strategy(gs_sup_spec *s, gs_child_spec *c) { (void)c; s->strategy = (gs_strategy)99; }
static void mu_intensity(gs_sup_spec *s, gs_child_spec *c) { (void)c; s->intensity = -1; }
static void mu_period(gs_sup_spec *s, gs_child_spec *c) { (void)c; s->period_ms = 0; }
static void mu_period_neg(gs_sup_spec *s, gs_child_spec *c) { (void)c; s->period_ms = INT_MIN; }
static void mu_children_null(gs_sup_spec *s, gs_child_spec *c) { (void)c; s->children = NULL; }
static void mu_no_id(gs_sup_spec *s, gs_child_spec *c) { (void)s; c[1].id = NULL; }
static void mu_no_ops(gs_sup_spec *s, gs_child_spec *c) { (void)s; c[1].ops = NULL; }
static void mu_restart(gs_sup_spec *s, gs_child_spec *c) { (void)s; c[0].restart = (gs_restart)77; }
static void mu_shutdown(gs_sup_spec *s, gs_child_spec *c) { (void)s; c[0].shutdown_ms = -5; }
static void mu_empty_name(gs_sup_spec *s, gs_child_spec *c) { (void)s; c[0].name = ""; }
static void mu_long_name(gs_sup_spec *s, gs_child_spec *c) { (void)s; c[0].name = g_long_name; }
static void mu_max_children(gs_sup_spec *s, gs_child_spec *c) { (void)c; s->max_children = 1; }
static void mu_dup(gs_sup_spec *s, gs_child_spec *c) { (void)s; c[1].id = "c1"; }

static int sup_add(const gs_child_spec *c) { return gs_supervisor_start_child(F.rt, g_sup, c, &g_sout); }
/* A child spec made bad by `mut` (which edits child `which` of the pair). */
static int sup_add_mut(void (*mut)(gs_sup_spec *, gs_child_spec *), int which)
{
    gs_child_spec ch[2] = {g_child, g_child};
    ch[0].id = ch[1].id = "fresh";
    gs_sup_spec s = {GS_ONE_FOR_ONE, 3, 1000, ch, 2, 0};
    mut(&s, ch);
    return sup_add(&ch[which]);
}

CASE(v_null_rt, gs_supervisor_start(NULL, &g_spec_bad, &g_sout))
CASE(v_null_spec, gs_supervisor_start(F.rt, NULL, &g_sout))
CASE(v_strategy, sup_with(mu_strategy))
CASE(v_intensity, sup_with(mu_intensity))
CASE(v_period, sup_with(mu_period))
CASE(v_period_neg, sup_with(mu_period_neg))
CASE(v_children_null, sup_with(mu_children_null))
CASE(v_no_id, sup_with(mu_no_id))
CASE(v_no_ops, sup_with(mu_no_ops))
CASE(v_restart, sup_with(mu_restart))
CASE(v_shutdown, sup_with(mu_shutdown))
CASE(v_empty_name, sup_with(mu_empty_name))
CASE(v_long_name, sup_with(mu_long_name))
CASE(v_max_children, sup_with(mu_max_children))
CASE(v_dup, sup_with(mu_dup))
CASE(sc_null_rt, gs_supervisor_start_child(NULL, g_sup, &g_child, &g_sout))
CASE(sc_null_child, gs_supervisor_start_child(F.rt, g_sup, NULL, &g_sout))
CASE(sc_dup, sup_add(&g_child))
CASE(sc_no_ops, sup_add_mut(mu_no_ops, 1))
CASE(sc_no_id, sup_add_mut(mu_no_id, 1))
CASE(sc_shutdown, sup_add_mut(mu_shutdown, 0))
CASE(sc_stale, gs_supervisor_start_child(F.rt, F.stale, &g_child, &g_sout))
CASE(sc_nopid, gs_supervisor_start_child(F.rt, GS_NOPID, &g_child, &g_sout))
CASE(sc_other_rt, gs_supervisor_start_child(F.rt, F.other, &g_child, &g_sout))
CASE(sc_not_sup, gs_supervisor_start_child(F.rt, F.live, &g_child, &g_sout))
CASE(tc_null_rt, gs_supervisor_terminate_child(NULL, g_sup, "c1"))
CASE(tc_null_id, gs_supervisor_terminate_child(F.rt, g_sup, NULL))
CASE(tc_unknown, gs_supervisor_terminate_child(F.rt, g_sup, "nobody"))
CASE(tc_stale, gs_supervisor_terminate_child(F.rt, F.stale, "c1"))
CASE(tc_not_sup, gs_supervisor_terminate_child(F.rt, F.live, "c1"))
CASE(wc_null_rt, gs_supervisor_which_child(NULL, g_sup, "c1", &g_sout))
CASE(wc_null_id, gs_supervisor_which_child(F.rt, g_sup, NULL, &g_sout))
CASE(wc_null_out, gs_supervisor_which_child(F.rt, g_sup, "c1", NULL))
CASE(wc_unknown, gs_supervisor_which_child(F.rt, g_sup, "nobody", &g_sout))
CASE(wc_not_sup, gs_supervisor_which_child(F.rt, F.live, "c1", &g_sout))
CASE(wc_stale, gs_supervisor_which_child(F.rt, F.stale, "c1", &g_sout))

static const entry sup_table[] = {
    {"gs_supervisor_start", "rt NULL", GS_EINVAL, v_null_rt},
    {"gs_supervisor_start", "spec NULL", GS_EINVAL, v_null_spec},
    {"gs_supervisor_start", "unknown strategy", GS_EINVAL, v_strategy},
    {"gs_supervisor_start", "intensity -1", GS_EINVAL, v_intensity},
    {"gs_supervisor_start", "period_ms 0", GS_EINVAL, v_period},
    {"gs_supervisor_start", "period_ms INT_MIN", GS_EINVAL, v_period_neg},
    {"gs_supervisor_start", "children NULL, nchildren 2", GS_EINVAL, v_children_null},
    {"gs_supervisor_start", "a child without id", GS_EINVAL, v_no_id},
    {"gs_supervisor_start", "a child without ops", GS_EINVAL, v_no_ops},
    {"gs_supervisor_start", "a bad restart type", GS_EINVAL, v_restart},
    {"gs_supervisor_start", "shutdown_ms -5", GS_EINVAL, v_shutdown},
    {"gs_supervisor_start", "an empty child name", GS_EINVAL, v_empty_name},
    {"gs_supervisor_start", "a child name too long", GS_EINVAL, v_long_name},
    {"gs_supervisor_start", "2 children, max_children 1", GS_EINVAL, v_max_children},
    {"gs_supervisor_start", "duplicate ids", GS_EEXIST, v_dup},
    {"gs_supervisor_start_child", "rt NULL", GS_EINVAL, sc_null_rt},
    {"gs_supervisor_start_child", "child NULL", GS_EINVAL, sc_null_child},
    {"gs_supervisor_start_child", "duplicate id", GS_EEXIST, sc_dup},
    {"gs_supervisor_start_child", "child without ops", GS_EINVAL, sc_no_ops},
    {"gs_supervisor_start_child", "child without id", GS_EINVAL, sc_no_id},
    {"gs_supervisor_start_child", "shutdown_ms -5", GS_EINVAL, sc_shutdown},
    {"gs_supervisor_start_child", "sup stale", GS_ENOPROC, sc_stale},
    {"gs_supervisor_start_child", "sup GS_NOPID", GS_ENOPROC, sc_nopid},
    {"gs_supervisor_start_child", "sup of another runtime", GS_ENOPROC, sc_other_rt},
    {"gs_supervisor_start_child", "sup not a supervisor", GS_ENOTSUP, sc_not_sup},
    {"gs_supervisor_terminate_child", "rt NULL", GS_EINVAL, tc_null_rt},
    {"gs_supervisor_terminate_child", "id NULL", GS_EINVAL, tc_null_id},
    {"gs_supervisor_terminate_child", "unknown id", GS_ENOENT, tc_unknown},
    {"gs_supervisor_terminate_child", "sup stale", GS_ENOPROC, tc_stale},
    {"gs_supervisor_terminate_child", "sup not a supervisor", GS_ENOTSUP, tc_not_sup},
    {"gs_supervisor_which_child", "rt NULL", GS_EINVAL, wc_null_rt},
    {"gs_supervisor_which_child", "id NULL", GS_EINVAL, wc_null_id},
    {"gs_supervisor_which_child", "out NULL", GS_EINVAL, wc_null_out},
    {"gs_supervisor_which_child", "unknown id", GS_ENOENT, wc_unknown},
    {"gs_supervisor_which_child", "sup not a supervisor", GS_ENOTSUP, wc_not_sup},
    {"gs_supervisor_which_child", "sup stale", GS_ENOPROC, wc_stale},
};

static void full_sup(gs_sup_spec *s, gs_child_spec *c)
{
    (void)c;
    s->nchildren = 1;
    s->max_children = 1;
}

Test(badinput, supervisor, .init = fx_setup, .fini = fx_teardown, .timeout = 60)
{
    memset(g_long_name, 'n', GS_NAME_MAX + 1);
    g_long_name[GS_NAME_MAX + 1] = '\0';
    g_spec_bad = (gs_sup_spec){GS_ONE_FOR_ONE, 3, 1000, &g_child, 1, 0};
    gs_sup_spec spec = {GS_ONE_FOR_ONE, 3, 1000, &g_child, 1, 0};
    cr_assert_eq(gs_supervisor_start(F.rt, &spec, &g_sup), GS_OK);
    g_sout = GS_NOPID;
    run_table("supervisor entries", sup_table, N_OF(sup_table));
    cr_expect_eq(g_sout, GS_NOPID, "a refused call wrote *out");

    /* A full supervisor refuses with GS_EAGAIN. */
    gs_child_spec ch[2] = {g_child, g_child};
    gs_sup_spec s = {GS_ONE_FOR_ONE, 3, 1000, ch, 2, 0};
    full_sup(&s, ch);
    gs_pid full;
    cr_assert_eq(gs_supervisor_start(F.rt, &s, &full), GS_OK);
    gs_child_spec extra = g_child;
    extra.id = "extra";
    cr_expect_eq(gs_supervisor_start_child(F.rt, full, &extra, NULL), GS_EAGAIN,
                 "start_child on a full supervisor");
    /* The supervisor still works. */
    gs_pid c = GS_NOPID;
    cr_expect_eq(gs_supervisor_which_child(F.rt, g_sup, "c1", &c), GS_OK);
    cr_expect_neq(c, GS_NOPID);
    cr_expect_eq(gs_supervisor_terminate_child(F.rt, g_sup, "c1"), GS_OK);
    cr_expect_eq(gs_supervisor_terminate_child(F.rt, g_sup, "c1"), GS_ENOENT,
                 "terminate_child twice");
    cr_assert_eq(gs_stop(F.rt, full, GS_SHUTDOWN, 5000), GS_OK);
    cr_assert_eq(gs_stop(F.rt, g_sup, GS_SHUTDOWN, 5000), GS_OK);
    still_serving("supervisor");
}

/* ---- formatting and sentences ------------------------------------------ */

Test(badinput, format_and_strerror, .timeout = 10)
{
    char buf[8];
    memset(buf, 'Z', sizeof buf);
    cr_expect_eq(gs_pid_format(UINT64_MAX, buf, 0), buf, "cap 0 returns buf");
    cr_expect_eq(buf[0], 'Z', "cap 0 wrote a byte");
    cr_expect_eq(gs_pid_format(UINT64_MAX, buf, 1), buf);
    cr_expect_eq(buf[0], '\0', "cap 1 gives the empty string");
    cr_expect_eq(buf[1], 'Z', "cap 1 wrote past the first byte");
    memset(buf, 'Z', sizeof buf);
    gs_pid_format(UINT64_MAX, buf, 5);
    cr_expect_eq(buf[4], '\0', "cap 5: not NUL terminated at 4");
    cr_expect_eq(buf[5], 'Z', "cap 5 wrote past the cap");
    static const int codes[] = {INT_MIN, INT_MIN + 1, -1000, -16, -15, -1, 0, 1, 2, 3, 4, 42,
                                INT_MAX};
    for (size_t i = 0; i < N_OF(codes); i++) {
        const char *m = gs_strerror(codes[i]);
        cr_expect_not_null(m, "gs_strerror(%d) is NULL", codes[i]);
        if (m)
            cr_expect_gt(strlen(m), 0, "gs_strerror(%d) is empty", codes[i]);
    }
    cr_expect_str_eq(gs_strerror(-1000), "unknown error");
    cr_expect_str_eq(gs_strerror(INT_MIN), "unknown error");
    cr_expect_str_eq(gs_strerror(42), "user-defined reason");
    cr_expect_str_eq(gs_strerror(INT_MAX), "user-defined reason");
}
