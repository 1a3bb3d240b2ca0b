/* test_kill.c - gs_kill: removed before the next callback, terminate
 * skipped, queued calls fail, monitors and links see GS_KILLED. */
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

Test(kill, idle_server_is_removed_without_terminate, .timeout = 20)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        probe_reset();
        gs_runtime *rt = rt_new(workers);
        gs_pid w = start_ok(rt, &probe_ops, NULL);
        gs_pid t = start_ok(rt, &probe_ops, NULL);
        gs_ref ref = monitor_ok(rt, w, t);
        ping_ok(rt, t);
        cr_assert_eq(gs_kill(rt, t), GS_OK);
        cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 10000), "no DOWN after gs_kill (%u workers)", workers);
        ev e;
        cr_assert(ev_find(w, GS_TAG_DOWN, &e));
        cr_assert_eq(e.len, sizeof(gs_down));
        cr_assert_eq(e.down.ref, ref);
        cr_assert_eq(e.down.pid, t);
        cr_assert_eq(e.down.reason, GS_KILLED, "DOWN reason %d, want GS_KILLED", e.down.reason);
        cr_assert_eq(gs_cast(rt, t, P_NOTE, NULL, 0), GS_ENOPROC);
        cr_assert_eq(gs_kill(rt, t), GS_ENOPROC, "gs_kill of a dead pid");
        cr_assert_eq(gs_stop(rt, t, GS_NORMAL, 1000), GS_ENOPROC);
        rt_free(rt);
        cr_assert_eq(term_count(t), 0, "terminate ran for a killed server");
        cr_assert_eq(term_count(w), 1);
    }
}

typedef struct call_job {
    gs_runtime *rt;
    gs_pid to;
    int rc;
    int64_t took_ms;
} call_job;

static void *call_thread(void *p)
{
    call_job *j = p;
    int64_t t0 = now_ms();
    j->rc = pcall(j->rt, j->to, K_PING, GS_NOPID, NULL, NULL); /* 10 s timeout */
    j->took_ms = now_ms() - t0;
    return NULL;
}

typedef struct stop_job {
    gs_runtime *rt;
    gs_pid to;
    int rc;
    int64_t took_ms;
} stop_job;

static void *stop_thread(void *p)
{
    stop_job *j = p;
    int64_t t0 = now_ms();
    j->rc = gs_stop(j->rt, j->to, GS_NORMAL, 10000);
    j->took_ms = now_ms() - t0;
    return NULL;
}

/* A server busy in a long callback: gs_kill returns at once, the callback
 * finishes, and then nothing else runs: queued casts are not handled,
 * queued calls fail with GS_ENOPROC (at once, not by their timeout),
 * terminate does not run, monitors see GS_KILLED. */
static void kill_busy(unsigned workers, int ncalls, int ncasts)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    block_server(rt, t);
    for (int i = 0; i < ncasts; i++)
        cr_assert_eq(gs_cast(rt, t, P_NOTE, NULL, 0), GS_OK);
    call_job calls[4];
    pthread_t th[4];
    for (int i = 0; i < ncalls; i++) {
        calls[i] = (call_job){rt, t, 12345, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, call_thread, &calls[i]), 0);
    }
    sleep_ms(100); /* let the calls reach the mailbox (either way they must fail) */
    int64_t t0 = now_ms();
    int rc = gs_kill(rt, t);
    int64_t kill_ms = now_ms() - t0;
    cr_assert_eq(rc, GS_OK, "gs_kill: %d (%s)", rc, gs_strerror(rc));
    cr_assert_lt(kill_ms, 2000, "gs_kill waited (%" PRId64 " ms)", kill_ms);
    /* The callback is still running: it is not interrupted. */
    sleep_ms(100);
    cr_assert_eq(atomic_load(&g_unblocked), 0);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 0, "DOWN before the running callback returned");
    gate_open();
    cr_assert(wait_int_eq(&g_unblocked, 1, 10000));
    cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 10000), "no DOWN after the killed server's callback returned");
    for (int i = 0; i < ncalls; i++)
        pthread_join(th[i], NULL);
    ev e;
    cr_assert(ev_find(w, GS_TAG_DOWN, &e));
    cr_assert_eq(e.down.ref, ref);
    cr_assert_eq(e.down.reason, GS_KILLED);
    cr_assert_eq(atomic_load(&g_notes), 0, "%d queued casts were handled after gs_kill",
                 atomic_load(&g_notes));
    for (int i = 0; i < ncalls; i++) {
        cr_assert_eq(calls[i].rc, GS_ENOPROC, "queued call %d: %d (%s) after %" PRId64 " ms", i,
                     calls[i].rc, gs_strerror(calls[i].rc), calls[i].took_ms);
        cr_assert_lt(calls[i].took_ms, 5000, "queued call %d failed only by its timeout", i);
    }
    cr_assert_eq(gs_cast(rt, t, P_NOTE, NULL, 0), GS_ENOPROC);
    rt_free(rt);
    cr_assert_eq(term_count(t), 0, "terminate ran for a killed server");
}

Test(kill, busy_server_killed_after_its_callback_2_workers, .timeout = 40) { kill_busy(2, 1, 20); }
Test(kill, busy_server_killed_after_its_callback_3_calls, .timeout = 40) { kill_busy(4, 3, 20); }
Test(kill, busy_server_killed_no_calls_queued, .timeout = 40) { kill_busy(2, 0, 20); }
/* The call is the very next message after the running callback. */
Test(kill, busy_server_killed_call_is_next_message, .timeout = 40) { kill_busy(2, 1, 0); }

/* Calls queued at an idle-but-backlogged server: no callback runs at all. */
Test(kill, queued_call_behind_casts_gets_enoproc_1_worker, .timeout = 40)
{
    probe_reset();
    gs_runtime *rt = rt_new(1);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    monitor_ok(rt, w, t);
    /* Keep the only worker busy in w so that t cannot run meanwhile. */
    block_server(rt, w);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(gs_cast(rt, t, P_NOTE, NULL, 0), GS_OK);
    call_job cj = {rt, t, 12345, 0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, call_thread, &cj), 0);
    sleep_ms(100);
    cr_assert_eq(gs_kill(rt, t), GS_OK);
    gate_open();
    pthread_join(th, NULL);
    cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 10000));
    cr_assert_eq(cj.rc, GS_ENOPROC, "queued call: %d (%s) after %" PRId64 " ms", cj.rc,
                 gs_strerror(cj.rc), cj.took_ms);
    cr_assert_lt(cj.took_ms, 5000);
    cr_assert_eq(atomic_load(&g_notes), 0);
    rt_free(rt);
    cr_assert_eq(term_count(t), 0);
}

/* A gs_stop waiting on a server that gets killed returns once it is gone
 * (not by its timeout). */
Test(kill, pending_gs_stop_returns_when_killed, .timeout = 40)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    monitor_ok(rt, w, t);
    block_server(rt, t);
    stop_job sj = {rt, t, 12345, 0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, stop_thread, &sj), 0);
    sleep_ms(100);
    cr_assert_eq(gs_kill(rt, t), GS_OK);
    gate_open();
    pthread_join(th, NULL);
    cr_assert(sj.rc == GS_OK || sj.rc == GS_ENOPROC, "gs_stop: %d (%s)", sj.rc, gs_strerror(sj.rc));
    cr_assert_lt(sj.took_ms, 5000, "gs_stop waited %" PRId64 " ms for a killed server", sj.took_ms);
    cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 10000));
    ev e;
    cr_assert(ev_find(w, GS_TAG_DOWN, &e));
    cr_assert_eq(e.down.reason, GS_KILLED);
    rt_free(rt);
    cr_assert_eq(term_count(t), 0);
}

/* Monitors still queued (not yet seen by the target) when it is killed
 * fire too: every gs_monitor that returned GS_OK gets its DOWN. */
static void kill_with_queued_monitors(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    for (int round = 0; round < 20; round++) {
        gs_pid t = start_ok(rt, &probe_ops, NULL);
        int n = 1 + round * 10;
        for (int i = 0; i < n; i++)
            monitor_ok(rt, w, t);
        cr_assert_eq(gs_kill(rt, t), GS_OK);
        cr_assert(wait_dead(rt, t, 10000));
    }
    int want = 0;
    for (int round = 0; round < 20; round++)
        want += 1 + round * 10;
    bool ok = wait_ev(w, GS_TAG_DOWN, want, 10000);
    cr_assert(ok, "%d of %d DOWNs after gs_kill (%u workers)", ev_count(w, GS_TAG_DOWN), want, workers);
    rt_free(rt);
}

Test(kill, every_monitor_fires_even_if_queued_at_kill_1_worker, .timeout = 40) { kill_with_queued_monitors(1); }
Test(kill, every_monitor_fires_even_if_queued_at_kill_2_workers, .timeout = 40) { kill_with_queued_monitors(2); }

Test(kill, from_own_callback_is_edeadlk, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    int64_t st = 12345;
    cr_assert_eq(pcall(rt, t, K_KILL, t, &st, NULL), GS_OK);
    cr_assert_eq(st, GS_EDEADLK, "gs_kill(self) from a callback: %d (%s)", (int)st, gs_strerror((int)st));
    sleep_ms(20);
    ping_ok(rt, t); /* nothing happened to it */
    stop_ok(rt, t);
    cr_assert_eq(term_count(t), 1);
    rt_free(rt);
}

Test(kill, another_server_from_a_callback, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid k = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    int64_t st = 12345;
    cr_assert_eq(pcall(rt, k, K_KILL, t, &st, NULL), GS_OK);
    cr_assert_eq(st, GS_OK);
    cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 10000));
    cr_assert_eq(down_count(ref), 1);
    ev e;
    cr_assert(ev_find(w, GS_TAG_DOWN, &e));
    cr_assert_eq(e.down.reason, GS_KILLED);
    cr_assert_eq(pcall(rt, k, K_KILL, t, &st, NULL), GS_OK);
    cr_assert_eq(st, GS_ENOPROC, "gs_kill of a dead pid from a callback: %d", (int)st);
    rt_free(rt);
    cr_assert_eq(term_count(t), 0);
}

Test(kill, bad_arguments, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(1);
    cr_assert_eq(gs_kill(NULL, 1), GS_EINVAL);
    cr_assert_eq(gs_kill(rt, GS_NOPID), GS_ENOPROC);
    cr_assert_eq(gs_kill(rt, (gs_pid)0x00ABCDEF00123457ull), GS_ENOPROC);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    stop_ok(rt, t);
    cr_assert_eq(gs_kill(rt, t), GS_ENOPROC);
    rt_free(rt);
}

Test(kill, strerror_of_killed_is_meaningful, .timeout = 10)
{
    const char *s = gs_strerror(GS_KILLED);
    cr_assert_not_null(s);
    cr_assert_gt(strlen(s), 3);
    cr_assert_str_neq(s, "unknown error");
    cr_assert_str_neq(s, "user-defined reason");
    cr_assert_str_neq(s, gs_strerror(GS_SHUTDOWN));
    cr_assert_str_neq(s, gs_strerror(GS_NORMAL));
    cr_assert(strstr(s, "kill") != NULL || strstr(s, "Kill") != NULL, "GS_KILLED is \"%s\"", s);
}

/* A killed server's names are released and its links get GS_KILLED. */
Test(kill, releases_names_and_signals_links, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid trapper = start_ok(rt, &probe_ops, NULL);
    gs_pid plain = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    trap_on(rt, trapper);
    link_ok(rt, trapper, t);
    link_ok(rt, plain, t);
    cr_assert_eq(gs_register(rt, "kill-me", t), GS_OK);
    ping_ok(rt, t); /* t has taken both links in (see the queued-message tests) */
    cr_assert_eq(gs_kill(rt, t), GS_OK);
    cr_assert(wait_ev(trapper, GS_TAG_EXIT, 1, 10000));
    ev e;
    cr_assert(ev_find(trapper, GS_TAG_EXIT, &e));
    cr_assert_eq(e.len, sizeof(gs_exit_signal));
    cr_assert_eq(e.ex.pid, t);
    cr_assert_eq(e.ex.reason, GS_KILLED);
    gs_pid got;
    cr_assert_eq(gs_whereis(rt, "kill-me", &got), GS_ENOENT);
    /* The non-trapping linked server exits with GS_KILLED, and unlike the
     * killed one it runs terminate. */
    cr_assert(wait_term(plain, 10000));
    cr_assert_eq(term_reason(plain), GS_KILLED);
    rt_free(rt);
    cr_assert_eq(term_count(t), 0);
}
