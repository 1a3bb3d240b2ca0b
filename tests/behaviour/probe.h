/* probe.h - the "probe" server shared by the monitor, link, kill and name
 * tests: it does what the test thread asks (crash, stop, block on a gate
 * the test opens, link, monitor, demonitor) and records every handle_info
 * message and every terminate; the test thread asserts on the records.
 * Include after common.h; everything is static (one copy per test). */
#ifndef GS_BEHAVIOUR_PROBE_H
#define GS_BEHAVIOUR_PROBE_H

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

#endif
