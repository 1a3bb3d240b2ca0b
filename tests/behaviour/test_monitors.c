/* test_monitors.c - gs_monitor / gs_demonitor and DOWN messages.
 *
 * A "probe" server does what the test asks (crash, stop, block on a gate
 * the test opens, link, monitor, demonitor) and records every handle_info
 * message and every terminate; the test thread asserts on the records.
 */
#include "common.h"

/* ------------------------------------------------------------------ */
/* The probe server: does what the test thread asks, records what it   */
/* gets. Callbacks never assert: they record, the test thread checks.  */
/* ------------------------------------------------------------------ */

enum {
    P_CRASH = 1,     /* cast: return the int payload (a crash code) */
    P_STOP = 2,      /* cast: return GS_STOP */
    P_STOP_WITH = 3, /* cast: gs_set_exit_reason(int payload), return GS_STOP */
    P_BLOCK = 4,     /* cast: wait until the test opens the gate */
    P_NOTE = 5,      /* cast: count it (g_notes) */
    P_DEMON = 6,     /* cast: gs_demonitor(gs_ref payload), record the status */
    K_PING = 20,     /* call: reply 0 */
    K_LINK = 21,     /* call: gs_link(pid payload), reply the status */
    K_UNLINK = 22,   /* call: gs_unlink(pid payload), reply the status */
    K_TRAP = 23,     /* call: gs_trap_exits(int payload), reply 0 */
    K_KILL = 24,     /* call: gs_kill(pid payload), reply the status */
    K_MONITOR = 25,  /* call: gs_monitor(self, pid payload), reply {status, ref} */
    K_LINK_SELF = 26, /* call: gs_link(self), reply the status */
};

/* One handle_info message, as the probe saw it. */
typedef struct ev {
    gs_pid self;
    uint32_t tag;
    gs_pid sender;
    size_t len;
    gs_down down;       /* when tag == GS_TAG_DOWN and len fits */
    gs_exit_signal ex;  /* when tag == GS_TAG_EXIT and len fits */
    int whereis_rc;     /* DOWN only: gs_whereis(g_watch_name) in the handler */
    gs_pid whereis_pid;
    int reg_rc;         /* DOWN only: gs_register(g_watch_name, g_reg_pid) if set */
} ev;

#define EV_MAX 40000
static ev g_ev[EV_MAX];
static int g_nev; /* under g_ev_mu */
static pthread_mutex_t g_ev_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int g_ev_overflow;

#define TERM_MAX 1024
typedef struct term_rec {
    gs_pid pid;
    int reason;
} term_rec;
static term_rec g_term[TERM_MAX];
static int g_nterm; /* under g_ev_mu */

static atomic_int g_gate_open;  /* P_BLOCK waits for it */
static atomic_int g_blocked;    /* P_BLOCK callbacks that started */
static atomic_int g_unblocked;  /* P_BLOCK callbacks that returned */
static atomic_int g_notes;      /* P_NOTE casts handled */
static atomic_int g_demon_rc;   /* the last P_DEMON status */
static atomic_int g_demon_done;
static char g_watch_name[GS_NAME_MAX + 1]; /* set before the test starts servers */
static _Atomic gs_pid g_reg_pid;           /* GS_NOPID: no registration in DOWN */

static inline void probe_reset(void)
{
    pthread_mutex_lock(&g_ev_mu);
    g_nev = 0;
    g_nterm = 0;
    memset(g_ev, 0, sizeof g_ev);
    memset(g_term, 0, sizeof g_term);
    pthread_mutex_unlock(&g_ev_mu);
    atomic_store(&g_ev_overflow, 0);
    atomic_store(&g_gate_open, 0);
    atomic_store(&g_blocked, 0);
    atomic_store(&g_unblocked, 0);
    atomic_store(&g_notes, 0);
    atomic_store(&g_demon_rc, 12345);
    atomic_store(&g_demon_done, 0);
    g_watch_name[0] = '\0';
    atomic_store(&g_reg_pid, GS_NOPID);
}

static int probe_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)state;
    int v = 0;
    if (msg->len == sizeof v)
        memcpy(&v, msg->data, sizeof v);
    switch (msg->tag) {
    case P_CRASH:
        return v;
    case P_STOP:
        return GS_STOP;
    case P_STOP_WITH:
        gs_set_exit_reason(ctx, v);
        return GS_STOP;
    case P_BLOCK: {
        atomic_fetch_add(&g_blocked, 1);
        int64_t end = now_ms() + 30000; /* never hang a worker for ever */
        while (!atomic_load(&g_gate_open) && now_ms() < end)
            sleep_ms(1);
        atomic_fetch_add(&g_unblocked, 1);
        return GS_OK;
    }
    case P_NOTE:
        atomic_fetch_add(&g_notes, 1);
        return GS_OK;
    case P_DEMON: {
        gs_ref ref = 0;
        if (msg->len == sizeof ref)
            memcpy(&ref, msg->data, sizeof ref);
        atomic_store(&g_demon_rc, gs_demonitor(gs_ctx_runtime(ctx), ref));
        atomic_store(&g_demon_done, 1);
        return GS_OK;
    }
    default:
        return GS_OK;
    }
}

static int probe_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    (void)state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    gs_pid arg = GS_NOPID;
    if (msg->len == sizeof arg)
        memcpy(&arg, msg->data, sizeof arg);
    int64_t out[2] = {0, 0};
    switch (msg->tag) {
    case K_PING:
        break;
    case K_LINK:
        out[0] = gs_link(ctx, arg);
        break;
    case K_UNLINK:
        out[0] = gs_unlink(ctx, arg);
        break;
    case K_TRAP:
        gs_trap_exits(ctx, (int)arg);
        break;
    case K_KILL:
        out[0] = gs_kill(rt, arg);
        break;
    case K_MONITOR: {
        gs_ref ref = 0;
        out[0] = gs_monitor(rt, gs_self(ctx), arg, &ref);
        out[1] = (int64_t)ref;
        break;
    }
    case K_LINK_SELF:
        out[0] = gs_link(ctx, gs_self(ctx));
        break;
    default:
        out[0] = 9999;
        break;
    }
    gs_reply(rt, from, out, sizeof out);
    return GS_OK;
}

static int probe_info(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)state;
    ev e;
    memset(&e, 0, sizeof e);
    e.self = gs_self(ctx);
    e.tag = msg->tag;
    e.sender = msg->sender;
    e.len = msg->len;
    e.whereis_rc = 12345;
    e.reg_rc = 12345;
    if (msg->tag == GS_TAG_DOWN && msg->len >= sizeof e.down && msg->data)
        memcpy(&e.down, msg->data, sizeof e.down);
    if (msg->tag == GS_TAG_EXIT && msg->len >= sizeof e.ex && msg->data)
        memcpy(&e.ex, msg->data, sizeof e.ex);
    if (msg->tag == GS_TAG_DOWN && g_watch_name[0] != '\0') {
        gs_runtime *rt = gs_ctx_runtime(ctx);
        e.whereis_rc = gs_whereis(rt, g_watch_name, &e.whereis_pid);
        gs_pid r = atomic_load(&g_reg_pid);
        if (r != GS_NOPID)
            e.reg_rc = gs_register(rt, g_watch_name, r);
    }
    pthread_mutex_lock(&g_ev_mu);
    if (g_nev < EV_MAX)
        g_ev[g_nev++] = e;
    else
        atomic_fetch_add(&g_ev_overflow, 1);
    pthread_mutex_unlock(&g_ev_mu);
    return GS_OK;
}

static void probe_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)state;
    pthread_mutex_lock(&g_ev_mu);
    if (g_nterm < TERM_MAX) {
        g_term[g_nterm].pid = gs_self(ctx);
        g_term[g_nterm].reason = reason;
        g_nterm++;
    }
    pthread_mutex_unlock(&g_ev_mu);
}

static const gs_server_ops probe_ops = {
    .name = "probe",
    .handle_cast = probe_cast,
    .handle_call = probe_call,
    .handle_info = probe_info,
    .terminate = probe_terminate,
};

/* ---- test-thread helpers --------------------------------------------- */

/* Events of `self` with `tag` (GS_NOPID: any server). */
static inline int ev_count(gs_pid self, uint32_t tag)
{
    int n = 0;
    pthread_mutex_lock(&g_ev_mu);
    for (int i = 0; i < g_nev; i++)
        if ((self == GS_NOPID || g_ev[i].self == self) && g_ev[i].tag == tag)
            n++;
    pthread_mutex_unlock(&g_ev_mu);
    return n;
}

/* DOWN messages that carry `ref` (any watcher). */
static inline int down_count(gs_ref ref)
{
    int n = 0;
    pthread_mutex_lock(&g_ev_mu);
    for (int i = 0; i < g_nev; i++)
        if (g_ev[i].tag == GS_TAG_DOWN && g_ev[i].down.ref == ref)
            n++;
    pthread_mutex_unlock(&g_ev_mu);
    return n;
}

/* The first event of `self` with `tag`; false if there is none. */
static inline bool ev_find(gs_pid self, uint32_t tag, ev *out)
{
    bool found = false;
    pthread_mutex_lock(&g_ev_mu);
    for (int i = 0; i < g_nev && !found; i++) {
        if (g_ev[i].self == self && g_ev[i].tag == tag) {
            *out = g_ev[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&g_ev_mu);
    return found;
}

static inline bool wait_ev(gs_pid self, uint32_t tag, int n, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        if (ev_count(self, tag) >= n)
            return true;
        if (now_ms() >= end)
            return false;
        sleep_ms(1);
    }
}

static inline int term_count(gs_pid pid)
{
    int n = 0;
    pthread_mutex_lock(&g_ev_mu);
    for (int i = 0; i < g_nterm; i++)
        if (g_term[i].pid == pid)
            n++;
    pthread_mutex_unlock(&g_ev_mu);
    return n;
}

/* The reason terminate got for `pid`, or 12345 if it did not run. */
static inline int term_reason(gs_pid pid)
{
    int r = 12345;
    pthread_mutex_lock(&g_ev_mu);
    for (int i = 0; i < g_nterm; i++)
        if (g_term[i].pid == pid)
            r = g_term[i].reason;
    pthread_mutex_unlock(&g_ev_mu);
    return r;
}

static inline bool wait_term(gs_pid pid, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        if (term_count(pid) > 0)
            return true;
        if (now_ms() >= end)
            return false;
        sleep_ms(1);
    }
}

/* Polls until a cast to `pid` fails with GS_ENOPROC (P_NOTE is harmless). */
static inline bool wait_dead(gs_runtime *rt, gs_pid pid, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        if (gs_cast(rt, pid, P_NOTE + 1000, NULL, 0) == GS_ENOPROC)
            return true;
        if (now_ms() >= end)
            return false;
        sleep_ms(2);
    }
}

/* A call carrying a pid; returns the call status; r0 and r1 get the reply. */
static inline int pcall(gs_runtime *rt, gs_pid to, uint32_t tag, gs_pid arg, int64_t *r0, int64_t *r1)
{
    int64_t out[2] = {12345, 0};
    size_t len = 0;
    int rc = gs_call(rt, to, tag, &arg, sizeof arg, out, sizeof out, &len, 10000);
    if (rc == GS_OK && len != sizeof out)
        return 9999;
    if (r0)
        *r0 = out[0];
    if (r1)
        *r1 = out[1];
    return rc;
}

static inline void ping_ok(gs_runtime *rt, gs_pid pid)
{
    int rc = pcall(rt, pid, K_PING, GS_NOPID, NULL, NULL);
    cr_assert_eq(rc, GS_OK, "ping returned %d (%s)", rc, gs_strerror(rc));
}

static inline void cast_int(gs_runtime *rt, gs_pid to, uint32_t tag, int v)
{
    int rc = gs_cast(rt, to, tag, &v, sizeof v);
    cr_assert_eq(rc, GS_OK, "gs_cast(tag %u) returned %d (%s)", tag, rc, gs_strerror(rc));
}

/* Makes `pid` wait in P_BLOCK until gate_open(); returns once it does. */
static inline void block_server(gs_runtime *rt, gs_pid pid)
{
    int before = atomic_load(&g_blocked);
    cast_int(rt, pid, P_BLOCK, 0);
    cr_assert(wait_int_ge(&g_blocked, before + 1, 10000), "the server never started blocking");
}

static inline void gate_open(void) { atomic_store(&g_gate_open, 1); }

static inline void link_ok(gs_runtime *rt, gs_pid a, gs_pid b)
{
    int64_t st = 12345;
    int rc = pcall(rt, a, K_LINK, b, &st, NULL);
    cr_assert_eq(rc, GS_OK, "K_LINK call returned %d (%s)", rc, gs_strerror(rc));
    cr_assert_eq(st, GS_OK, "gs_link returned %d (%s)", (int)st, gs_strerror((int)st));
}

static inline void trap_on(gs_runtime *rt, gs_pid a)
{
    int rc = pcall(rt, a, K_TRAP, (gs_pid)1, NULL, NULL);
    cr_assert_eq(rc, GS_OK, "K_TRAP call returned %d (%s)", rc, gs_strerror(rc));
}

static inline gs_ref monitor_ok(gs_runtime *rt, gs_pid watcher, gs_pid target)
{
    gs_ref ref = 0;
    int rc = gs_monitor(rt, watcher, target, &ref);
    cr_assert_eq(rc, GS_OK, "gs_monitor returned %d (%s)", rc, gs_strerror(rc));
    cr_assert_neq(ref, 0, "gs_monitor returned GS_OK and ref 0");
    return ref;
}

/* ------------------------------------------------------------------ */
/* DOWN payloads                                                       */
/* ------------------------------------------------------------------ */

/* Checks the single DOWN `watcher` got for `ref` about `target`. */
static void check_one_down(gs_pid watcher, gs_ref ref, gs_pid target, int reason)
{
    cr_assert(wait_ev(watcher, GS_TAG_DOWN, 1, 10000), "no DOWN reached the watcher");
    ev e;
    cr_assert(ev_find(watcher, GS_TAG_DOWN, &e));
    cr_assert_eq(e.tag, GS_TAG_DOWN);
    cr_assert_eq(e.len, sizeof(gs_down), "DOWN len %zu, want %zu", e.len, sizeof(gs_down));
    cr_assert_eq(e.down.ref, ref, "DOWN ref %" PRIx64 ", want %" PRIx64, e.down.ref, ref);
    cr_assert_eq(e.down.pid, target, "DOWN pid %" PRIx64 ", want %" PRIx64, e.down.pid, target);
    cr_assert_eq(e.down.reason, reason, "DOWN reason %d (%s), want %d (%s)", e.down.reason,
                 gs_strerror(e.down.reason), reason, gs_strerror(reason));
    cr_assert(e.sender == GS_NOPID || e.sender == target,
              "DOWN sender %" PRIx64 " is neither GS_NOPID nor the target", e.sender);
    sleep_ms(50);
    cr_assert_eq(ev_count(watcher, GS_TAG_DOWN), 1, "more than one DOWN");
    cr_assert_eq(down_count(ref), 1);
}

static void down_after_gs_stop(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    stop_ok(rt, t);
    check_one_down(w, ref, t, GS_NORMAL);
    ping_ok(rt, w); /* the watcher lives on */
    cr_assert_eq(term_count(w), 0);
    rt_free(rt);
}

Test(monitors, down_payload_exact_after_gs_stop_1_worker, .timeout = 20) { down_after_gs_stop(1); }
Test(monitors, down_payload_exact_after_gs_stop_2_workers, .timeout = 20) { down_after_gs_stop(2); }

static void down_with_reason(unsigned workers, int how, int reason)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    if (how == 0) {
        cast_int(rt, t, P_CRASH, reason);
    } else if (how == 1) {
        int rc = gs_stop(rt, t, reason, 10000);
        cr_assert_eq(rc, GS_OK, "gs_stop: %d", rc);
    } else {
        cast_int(rt, t, P_STOP_WITH, reason);
    }
    check_one_down(w, ref, t, reason);
    cr_assert(wait_term(t, 5000));
    cr_assert_eq(term_reason(t), reason);
    rt_free(rt);
}

Test(monitors, down_reason_is_crash_code_1_worker, .timeout = 20) { down_with_reason(1, 0, GS_EAGAIN); }
Test(monitors, down_reason_is_crash_code_2_workers, .timeout = 20) { down_with_reason(2, 0, GS_EAGAIN); }
Test(monitors, down_reason_is_user_stop_reason, .timeout = 20) { down_with_reason(2, 1, 42); }
Test(monitors, down_reason_is_shutdown_from_gs_stop, .timeout = 20) { down_with_reason(2, 1, GS_SHUTDOWN); }
Test(monitors, down_reason_is_set_exit_reason, .timeout = 20) { down_with_reason(2, 2, GS_SHUTDOWN); }
Test(monitors, down_reason_is_user_reason_from_stop_return, .timeout = 20) { down_with_reason(1, 2, 77); }

Test(monitors, down_for_normal_stop_return, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    cast_int(rt, t, P_STOP, 0);
    check_one_down(w, ref, t, GS_NORMAL);
    rt_free(rt);
}

/* gs_runtime_stop: both servers stop with GS_SHUTDOWN; the order is not
 * specified, so the watcher may be gone before the DOWN. Whatever DOWN
 * arrives must be exact and come once. */
Test(monitors, runtime_stop_down_if_any_says_shutdown, .timeout = 30)
{
    for (int round = 0; round < 20; round++) {
        probe_reset();
        gs_runtime *rt = rt_new(round % 2 ? 2 : 1);
        gs_pid w = start_ok(rt, &probe_ops, NULL);
        gs_pid t = start_ok(rt, &probe_ops, NULL);
        gs_pid w2 = start_ok(rt, &probe_ops, NULL);
        gs_ref ref = monitor_ok(rt, w, t);
        gs_ref ref2 = monitor_ok(rt, w2, t);
        rt_free(rt);
        cr_assert_eq(term_count(t), 1);
        cr_assert_eq(term_reason(t), GS_SHUTDOWN);
        cr_assert_eq(term_reason(w), GS_SHUTDOWN);
        cr_assert_leq(down_count(ref), 1);
        cr_assert_leq(down_count(ref2), 1);
        pthread_mutex_lock(&g_ev_mu);
        for (int i = 0; i < g_nev; i++) {
            if (g_ev[i].tag != GS_TAG_DOWN)
                continue;
            cr_assert(g_ev[i].down.ref == ref || g_ev[i].down.ref == ref2);
            cr_assert_eq(g_ev[i].self, g_ev[i].down.ref == ref ? w : w2);
            cr_assert_eq(g_ev[i].down.pid, t);
            cr_assert_eq(g_ev[i].down.reason, GS_SHUTDOWN, "round %d: DOWN reason %d at runtime stop",
                         round, g_ev[i].down.reason);
            cr_assert_eq(g_ev[i].len, sizeof(gs_down));
        }
        pthread_mutex_unlock(&g_ev_mu);
    }
}

/* ------------------------------------------------------------------ */
/* Dead targets, dead watchers, bad arguments                          */
/* ------------------------------------------------------------------ */

static void monitor_dead_target(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    stop_ok(rt, t);
    gs_ref ref = 0;
    int rc = gs_monitor(rt, w, t, &ref);
    cr_assert_eq(rc, GS_OK, "monitoring a dead pid: %d (%s)", rc, gs_strerror(rc));
    cr_assert_neq(ref, 0);
    check_one_down(w, ref, t, GS_ENOPROC);
    /* The DOWN was handled: the monitor is gone. */
    cr_assert_eq(gs_demonitor(rt, ref), GS_ENOENT);
    rt_free(rt);
}

Test(monitors, monitoring_dead_pid_gives_ok_and_immediate_down_1_worker, .timeout = 20) { monitor_dead_target(1); }
Test(monitors, monitoring_dead_pid_gives_ok_and_immediate_down_2_workers, .timeout = 20) { monitor_dead_target(2); }

Test(monitors, monitoring_made_up_pid_gives_down_enoproc, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid fake = (gs_pid)0x00ABCDEF00123457ull;
    gs_ref ref = monitor_ok(rt, w, fake);
    check_one_down(w, ref, fake, GS_ENOPROC);
    rt_free(rt);
}

Test(monitors, monitor_from_a_callback, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    int64_t st = 12345, ref = 0;
    cr_assert_eq(pcall(rt, w, K_MONITOR, t, &st, &ref), GS_OK);
    cr_assert_eq(st, GS_OK, "gs_monitor from a callback: %d", (int)st);
    cr_assert_neq(ref, 0);
    cast_int(rt, t, P_CRASH, GS_EBADRETURN);
    check_one_down(w, (gs_ref)ref, t, GS_EBADRETURN);
    rt_free(rt);
}

Test(monitors, watcher_not_alive_gives_enoproc, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    stop_ok(rt, w);
    gs_ref ref = 777;
    cr_assert_eq(gs_monitor(rt, w, t, &ref), GS_ENOPROC);
    cr_assert_eq(gs_monitor(rt, GS_NOPID, t, &ref), GS_ENOPROC);
    cr_assert_eq(gs_monitor(rt, (gs_pid)0x00ABCDEF00123457ull, t, &ref), GS_ENOPROC);
    /* Bad arguments. */
    gs_pid w2 = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_monitor(NULL, w2, t, &ref), GS_EINVAL);
    cr_assert_eq(gs_monitor(rt, w2, GS_NOPID, &ref), GS_EINVAL);
    cr_assert_eq(gs_demonitor(NULL, 1), GS_EINVAL);
    /* Nothing was set up: stopping the target notifies nobody. */
    stop_ok(rt, t);
    sleep_ms(50);
    ping_ok(rt, w2);
    cr_assert_eq(ev_count(GS_NOPID, GS_TAG_DOWN), 0);
    rt_free(rt);
}

Test(monitors, out_may_be_null, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    /* The header does not say out may be NULL for gs_monitor; if it is
     * accepted, DOWN must still come. */
    int rc = gs_monitor(rt, w, t, NULL);
    cr_assert(rc == GS_OK || rc == GS_EINVAL, "%d", rc);
    stop_ok(rt, t);
    if (rc == GS_OK)
        cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 5000));
    rt_free(rt);
}

/* ------------------------------------------------------------------ */
/* gs_demonitor                                                         */
/* ------------------------------------------------------------------ */

static void demonitor_before_exit(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid ctl = start_ok(rt, &probe_ops, NULL); /* a control watcher */
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    gs_ref ref_ctl = monitor_ok(rt, ctl, t);
    cr_assert_neq(ref, ref_ctl);
    cr_assert_eq(gs_demonitor(rt, ref), GS_OK);
    cr_assert_eq(gs_demonitor(rt, ref), GS_ENOENT, "demonitor twice");
    cast_int(rt, t, P_CRASH, GS_EAGAIN);
    check_one_down(ctl, ref_ctl, t, GS_EAGAIN);
    sleep_ms(50);
    ping_ok(rt, w);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 0, "DOWN of a demonitored ref");
    cr_assert_eq(down_count(ref), 0);
    cr_assert_eq(gs_demonitor(rt, ref), GS_ENOENT);
    rt_free(rt);
}

Test(monitors, demonitor_before_exit_no_down_1_worker, .timeout = 20) { demonitor_before_exit(1); }
Test(monitors, demonitor_before_exit_no_down_2_workers, .timeout = 20) { demonitor_before_exit(2); }

/* The target exits while the watcher is busy: the DOWN is queued (or on
 * its way); gs_demonitor must drop it. Needs a worker besides the busy
 * watcher's, so 2 and 4 workers. */
static void demonitor_queued_down(unsigned workers, int how)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid ctl = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    gs_ref ref_ctl = monitor_ok(rt, ctl, t);
    block_server(rt, w);
    if (how == 0) {
        stop_ok(rt, t);
    } else if (how == 1) {
        cast_int(rt, t, P_CRASH, GS_EAGAIN);
    } else {
        cr_assert_eq(gs_kill(rt, t), GS_OK);
    }
    /* The target has exited once the control watcher has its DOWN; the
     * busy watcher has not handled anything. */
    cr_assert(wait_ev(ctl, GS_TAG_DOWN, 1, 10000));
    cr_assert_eq(atomic_load(&g_unblocked), 0);
    int rc = gs_demonitor(rt, ref);
    int rc2 = gs_demonitor(rt, ref);
    gate_open();
    cr_assert(wait_int_eq(&g_unblocked, 1, 10000));
    ping_ok(rt, w);
    sleep_ms(50);
    ping_ok(rt, w);
    cr_assert_eq(rc, GS_OK, "demonitor of a fired, unhandled monitor: %d (%s)", rc, gs_strerror(rc));
    cr_assert_eq(rc2, GS_ENOENT, "second demonitor: %d", rc2);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 0, "a DOWN of a demonitored ref reached handle_info");
    cr_assert_eq(down_count(ref_ctl), 1);
    rt_free(rt);
}

Test(monitors, demonitor_drops_queued_down_stop_2_workers, .timeout = 30) { demonitor_queued_down(2, 0); }
Test(monitors, demonitor_drops_queued_down_stop_4_workers, .timeout = 30) { demonitor_queued_down(4, 0); }
Test(monitors, demonitor_drops_queued_down_crash_2_workers, .timeout = 30) { demonitor_queued_down(2, 1); }
Test(monitors, demonitor_drops_queued_down_kill_2_workers, .timeout = 30) { demonitor_queued_down(2, 2); }

/* The watcher itself demonitors from a callback while the DOWN sits in
 * its own mailbox behind that callback (the OTP "demonitor + flush"). */
Test(monitors, demonitor_from_watcher_callback_drops_its_queued_down, .timeout = 30)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid ctl = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    monitor_ok(rt, ctl, t);
    block_server(rt, w);
    cr_assert_eq(gs_cast(rt, w, P_DEMON, &ref, sizeof ref), GS_OK); /* queued before the DOWN */
    stop_ok(rt, t);
    cr_assert(wait_ev(ctl, GS_TAG_DOWN, 1, 10000));
    gate_open();
    cr_assert(wait_int_eq(&g_demon_done, 1, 10000));
    ping_ok(rt, w);
    sleep_ms(50);
    ping_ok(rt, w);
    cr_assert_eq(atomic_load(&g_demon_rc), GS_OK);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 0);
    rt_free(rt);
}

/* Once handled, the monitor is gone: demonitor gives GS_ENOENT. */
Test(monitors, demonitor_after_down_handled_is_enoent, .timeout = 30)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    stop_ok(rt, t);
    check_one_down(w, ref, t, GS_NORMAL);
    cr_assert_eq(gs_demonitor(rt, ref), GS_ENOENT);
    /* From the watcher itself too. */
    cr_assert_eq(gs_cast(rt, w, P_DEMON, &ref, sizeof ref), GS_OK);
    cr_assert(wait_int_eq(&g_demon_done, 1, 10000));
    cr_assert_eq(atomic_load(&g_demon_rc), GS_ENOENT);
    rt_free(rt);
}

Test(monitors, demonitor_of_unknown_refs_is_enoent, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_demonitor(rt, 0), GS_ENOENT);
    cr_assert_eq(gs_demonitor(rt, 0x0123456789ABCDEFull), GS_ENOENT);
    cr_assert_eq(gs_demonitor(rt, ~(gs_ref)0), GS_ENOENT);
    cr_assert_eq(gs_demonitor(rt, (gs_ref)w), GS_ENOENT, "a pid is not a monitor");
    gs_ref ref = monitor_ok(rt, w, t);
    /* Neighbours of a real ref are not refs. */
    cr_assert_eq(gs_demonitor(rt, ref + 1), GS_ENOENT);
    cr_assert_eq(gs_demonitor(rt, ref ^ ((gs_ref)1 << 40)), GS_ENOENT);
    cr_assert_eq(gs_demonitor(rt, ref ^ ((gs_ref)1 << 63)), GS_ENOENT);
    /* ...and the real one still works. */
    cr_assert_eq(gs_demonitor(rt, ref), GS_OK);
    stop_ok(rt, t);
    sleep_ms(50);
    ping_ok(rt, w);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 0);
    rt_free(rt);
}

/* A ref of a demonitored monitor must not come back to life when its
 * record is reused by a new monitor. */
Test(monitors, stale_ref_does_not_remove_a_newer_monitor, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref old[64];
    for (int i = 0; i < 64; i++) {
        old[i] = monitor_ok(rt, w, t);
        cr_assert_eq(gs_demonitor(rt, old[i]), GS_OK);
    }
    gs_ref fresh[64];
    for (int i = 0; i < 64; i++)
        fresh[i] = monitor_ok(rt, w, t);
    for (int i = 0; i < 64; i++) {
        for (int k = 0; k < 64; k++)
            cr_assert_neq(old[i], fresh[k], "a ref was reused");
        cr_assert_eq(gs_demonitor(rt, old[i]), GS_ENOENT);
    }
    stop_ok(rt, t);
    cr_assert(wait_ev(w, GS_TAG_DOWN, 64, 10000));
    sleep_ms(50);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(down_count(fresh[i]), 1);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 64);
    rt_free(rt);
}

/* ------------------------------------------------------------------ */
/* Many monitors                                                        */
/* ------------------------------------------------------------------ */

#define NMON 10000
#define NWATCHERS 16

static gs_ref g_refs[NMON];

static int cmp_ref(const void *a, const void *b)
{
    gs_ref x = *(const gs_ref *)a, y = *(const gs_ref *)b;
    return x < y ? -1 : x > y;
}

typedef struct mon_job {
    gs_runtime *rt;
    gs_pid target;
    const gs_pid *watchers;
    int from, to;
    atomic_int *fails;
} mon_job;

static void *monitor_thread(void *p)
{
    mon_job *j = p;
    for (int i = j->from; i < j->to; i++) {
        gs_ref r = 0;
        if (gs_monitor(j->rt, j->watchers[i % NWATCHERS], j->target, &r) != GS_OK || r == 0)
            atomic_fetch_add(j->fails, 1);
        g_refs[i] = r;
    }
    return NULL;
}

static void ten_thousand_monitors(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid watchers[NWATCHERS];
    for (int i = 0; i < NWATCHERS; i++)
        watchers[i] = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    atomic_int fails = 0;
    pthread_t th[4];
    mon_job jobs[4];
    for (int k = 0; k < 4; k++) {
        jobs[k] = (mon_job){rt, t, watchers, k * NMON / 4, (k + 1) * NMON / 4, &fails};
        cr_assert_eq(pthread_create(&th[k], NULL, monitor_thread, &jobs[k]), 0);
    }
    for (int k = 0; k < 4; k++)
        pthread_join(th[k], NULL);
    cr_assert_eq(atomic_load(&fails), 0, "%d gs_monitor calls failed", atomic_load(&fails));
    /* Every ref distinct. */
    static gs_ref sorted[NMON];
    memcpy(sorted, g_refs, sizeof sorted);
    qsort(sorted, NMON, sizeof sorted[0], cmp_ref);
    for (int i = 1; i < NMON; i++)
        cr_assert_neq(sorted[i - 1], sorted[i], "two monitors got the same ref");
    ping_ok(rt, t); /* the target has taken note of them (not required) */
    int64_t t0 = now_ms();
    int rc = gs_stop(rt, t, 42, 30000);
    cr_assert_eq(rc, GS_OK, "gs_stop of a server with %d monitors: %d", NMON, rc);
    cr_assert(wait_ev(GS_NOPID, GS_TAG_DOWN, NMON, 30000), "only %d of %d DOWNs arrived",
              ev_count(GS_NOPID, GS_TAG_DOWN), NMON);
    int64_t took = now_ms() - t0;
    sleep_ms(100);
    for (int i = 0; i < NWATCHERS; i++)
        ping_ok(rt, watchers[i]);
    cr_assert_eq(ev_count(GS_NOPID, GS_TAG_DOWN), NMON, "extra DOWNs");
    cr_assert_eq(atomic_load(&g_ev_overflow), 0);
    /* Exactly once per ref, each to its own watcher, exact payload. */
    static gs_ref got[NMON];
    pthread_mutex_lock(&g_ev_mu);
    int n = 0;
    for (int i = 0; i < g_nev; i++) {
        if (g_ev[i].tag != GS_TAG_DOWN)
            continue;
        cr_assert_eq(g_ev[i].len, sizeof(gs_down));
        cr_assert_eq(g_ev[i].down.pid, t);
        cr_assert_eq(g_ev[i].down.reason, 42);
        got[n++] = g_ev[i].down.ref;
    }
    pthread_mutex_unlock(&g_ev_mu);
    cr_assert_eq(n, NMON);
    qsort(got, NMON, sizeof got[0], cmp_ref);
    for (int i = 0; i < NMON; i++)
        cr_assert_eq(got[i], sorted[i], "DOWN refs differ from the monitors' refs at %d", i);
    /* The right watcher. */
    pthread_mutex_lock(&g_ev_mu);
    for (int i = 0; i < g_nev; i++) {
        if (g_ev[i].tag != GS_TAG_DOWN)
            continue;
        int at = -1;
        for (int k = 0; k < NMON; k++)
            if (g_refs[k] == g_ev[i].down.ref) {
                at = k;
                break;
            }
        cr_assert(at >= 0);
        cr_assert_eq(g_ev[i].self, watchers[at % NWATCHERS], "DOWN went to the wrong watcher");
    }
    pthread_mutex_unlock(&g_ev_mu);
    cr_assert_lt(took, 20000, "10,000 DOWNs took %" PRId64 " ms", took);
    for (int i = 0; i < NMON; i += 97)
        cr_assert_eq(gs_demonitor(rt, g_refs[i]), GS_ENOENT);
    rt_free(rt);
}

Test(monitors, ten_thousand_monitors_all_fire_once_1_worker, .timeout = 120) { ten_thousand_monitors(1); }
Test(monitors, ten_thousand_monitors_all_fire_once_2_workers, .timeout = 120) { ten_thousand_monitors(2); }

Test(monitors, one_watcher_ten_thousand_times, .timeout = 120)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < NMON; i++)
        g_refs[i] = monitor_ok(rt, w, t);
    cast_int(rt, t, P_CRASH, GS_EAGAIN);
    cr_assert(wait_ev(w, GS_TAG_DOWN, NMON, 30000), "only %d DOWNs", ev_count(w, GS_TAG_DOWN));
    sleep_ms(50);
    ping_ok(rt, w);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), NMON);
    static gs_ref a[NMON], b[NMON];
    memcpy(a, g_refs, sizeof a);
    pthread_mutex_lock(&g_ev_mu);
    int n = 0;
    for (int i = 0; i < g_nev; i++)
        if (g_ev[i].tag == GS_TAG_DOWN) {
            cr_assert_eq(g_ev[i].down.reason, GS_EAGAIN);
            b[n++] = g_ev[i].down.ref;
        }
    pthread_mutex_unlock(&g_ev_mu);
    qsort(a, NMON, sizeof a[0], cmp_ref);
    qsort(b, NMON, sizeof b[0], cmp_ref);
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "DOWN refs are not the monitors' refs, each once");
    rt_free(rt);
}

/* Memory: every way a monitor can end frees it (ASan's leak check at
 * exit covers this), and records are reused rather than piled up. */
Test(monitors, churn_create_demonitor_fire_no_leak, .timeout = 120)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid w2 = start_ok(rt, &probe_ops, NULL);
    /* 1. created and demonitored while the target lives. */
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 1000; i++)
            g_refs[i] = monitor_ok(rt, w, t);
        for (int i = 0; i < 1000; i++)
            cr_assert_eq(gs_demonitor(rt, g_refs[i]), GS_OK);
    }
    ping_ok(rt, t);
    stop_ok(rt, t);
    /* 2. created and fired. */
    int expect = 0;
    for (int round = 0; round < 10; round++) {
        gs_pid x = start_ok(rt, &probe_ops, NULL);
        for (int i = 0; i < 1000; i++)
            monitor_ok(rt, w, x);
        expect += 1000;
        ping_ok(rt, x); /* x has every monitor (test_kill covers monitors queued at gs_kill) */
        if (round % 2)
            stop_ok(rt, x);
        else
            cr_assert_eq(gs_kill(rt, x), GS_OK);
        cr_assert(wait_ev(w, GS_TAG_DOWN, expect, 30000));
    }
    /* 3. fired at a dead target. */
    for (int i = 0; i < 1000; i++)
        monitor_ok(rt, w, t);
    expect += 1000;
    cr_assert(wait_ev(w, GS_TAG_DOWN, expect, 30000));
    /* 4. the watcher dies first: its monitors fire into nothing. */
    gs_pid x = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < 1000; i++)
        monitor_ok(rt, w2, x);
    stop_ok(rt, w2);
    stop_ok(rt, x);
    /* 5. fired while the watcher is busy, then the watcher stops with the
     * DOWNs still queued. */
    gs_pid w3 = start_ok(rt, &probe_ops, NULL);
    gs_pid y = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < 1000; i++)
        monitor_ok(rt, w3, y);
    block_server(rt, w3);
    stop_ok(rt, y);
    cr_assert_eq(gs_kill(rt, w3), GS_OK);
    gate_open();
    cr_assert(wait_dead(rt, w3, 10000));
    /* 6. left alive at runtime stop. */
    gs_pid z = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < 1000; i++)
        monitor_ok(rt, w, z);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), expect);
    rt_free(rt);
}
