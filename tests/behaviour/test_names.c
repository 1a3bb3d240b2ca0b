/* test_names.c - gs_register / gs_unregister / gs_whereis and addressing
 * by name. */
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

static void name_of_len(char *buf, size_t n, char fill)
{
    memset(buf, fill, n);
    buf[n] = '\0';
}

Test(names, register_whereis_unregister, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid got = 777;
    cr_assert_eq(gs_whereis(rt, "alpha", &got), GS_ENOENT);
    cr_assert_eq(gs_register(rt, "alpha", a), GS_OK);
    cr_assert_eq(gs_whereis(rt, "alpha", &got), GS_OK);
    cr_assert_eq(got, a);
    cr_assert_eq(gs_unregister(rt, "alpha"), GS_OK);
    cr_assert_eq(gs_whereis(rt, "alpha", &got), GS_ENOENT);
    cr_assert_eq(gs_unregister(rt, "alpha"), GS_ENOENT);
    /* Unregistering does not touch the server. */
    ping_ok(rt, a);
    cr_assert_eq(term_count(a), 0);
    /* Names are case-sensitive and exact. */
    cr_assert_eq(gs_register(rt, "Alpha", a), GS_OK);
    cr_assert_eq(gs_whereis(rt, "alpha", &got), GS_ENOENT);
    cr_assert_eq(gs_whereis(rt, "Alph", &got), GS_ENOENT);
    cr_assert_eq(gs_whereis(rt, "Alpha ", &got), GS_ENOENT);
    cr_assert_eq(gs_whereis(rt, "Alpha", &got), GS_OK);
    rt_free(rt);
}

Test(names, name_is_copied, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(1);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    char buf[32];
    snprintf(buf, sizeof buf, "copied-name");
    cr_assert_eq(gs_register(rt, buf, a), GS_OK);
    memset(buf, 'x', sizeof buf - 1);
    buf[sizeof buf - 1] = '\0';
    gs_pid got = 0;
    cr_assert_eq(gs_whereis(rt, "copied-name", &got), GS_OK);
    cr_assert_eq(got, a);
    cr_assert_eq(gs_whereis(rt, buf, &got), GS_ENOENT);
    rt_free(rt);
}

Test(names, taken_name_is_eexist, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, "svc", a), GS_OK);
    cr_assert_eq(gs_register(rt, "svc", b), GS_EEXIST);
    cr_assert_eq(gs_register(rt, "svc", a), GS_EEXIST);
    gs_pid got = 0;
    cr_assert_eq(gs_whereis(rt, "svc", &got), GS_OK);
    cr_assert_eq(got, a, "a refused registration changed the name");
    rt_free(rt);
}

Test(names, invalid_names_and_arguments, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(1);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    static char longest[GS_NAME_MAX + 1], too_long[GS_NAME_MAX + 2], way_too_long[4096];
    name_of_len(longest, GS_NAME_MAX, 'L');
    name_of_len(too_long, GS_NAME_MAX + 1, 'T');
    name_of_len(way_too_long, sizeof way_too_long - 1, 'W');
    gs_pid got = 0;
    cr_assert_eq(gs_register(rt, NULL, a), GS_EINVAL);
    cr_assert_eq(gs_register(rt, "", a), GS_EINVAL);
    cr_assert_eq(gs_register(rt, too_long, a), GS_EINVAL);
    cr_assert_eq(gs_register(rt, way_too_long, a), GS_EINVAL);
    cr_assert_eq(gs_register(NULL, "x", a), GS_EINVAL);
    cr_assert_eq(gs_unregister(rt, NULL), GS_EINVAL);
    cr_assert_eq(gs_unregister(rt, ""), GS_EINVAL);
    cr_assert_eq(gs_unregister(rt, too_long), GS_EINVAL);
    cr_assert_eq(gs_unregister(NULL, "x"), GS_EINVAL);
    cr_assert_eq(gs_whereis(rt, NULL, &got), GS_EINVAL);
    cr_assert_eq(gs_whereis(rt, "", &got), GS_EINVAL);
    cr_assert_eq(gs_whereis(rt, too_long, &got), GS_EINVAL);
    cr_assert_eq(gs_whereis(rt, "x", NULL), GS_EINVAL);
    cr_assert_eq(gs_whereis(NULL, "x", &got), GS_EINVAL);
    /* GS_NAME_MAX bytes is fine. */
    cr_assert_eq(gs_register(rt, longest, a), GS_OK);
    cr_assert_eq(gs_whereis(rt, longest, &got), GS_OK);
    cr_assert_eq(got, a);
    /* A name that is a prefix of a too-long one is not confused with it. */
    char prefix[GS_NAME_MAX + 1];
    memcpy(prefix, too_long, GS_NAME_MAX);
    prefix[GS_NAME_MAX] = '\0';
    cr_assert_eq(gs_register(rt, prefix, a), GS_OK);
    cr_assert_eq(gs_whereis(rt, too_long, &got), GS_EINVAL);
    cr_assert_eq(gs_unregister(rt, longest), GS_OK);
    /* A single byte, and bytes outside ASCII. */
    cr_assert_eq(gs_register(rt, "x", a), GS_OK);
    cr_assert_eq(gs_register(rt, "\xc3\xa9t\xc3\xa9", a), GS_OK);
    cr_assert_eq(gs_whereis(rt, "\xc3\xa9t\xc3\xa9", &got), GS_OK);
    rt_free(rt);
}

Test(names, register_dead_pid_is_enoproc, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    stop_ok(rt, a);
    cr_assert_eq(gs_register(rt, "ghost", a), GS_ENOPROC);
    cr_assert_eq(gs_register(rt, "ghost", GS_NOPID), GS_ENOPROC);
    cr_assert_eq(gs_register(rt, "ghost", (gs_pid)0x00ABCDEF00123457ull), GS_ENOPROC);
    gs_pid got = 0;
    cr_assert_eq(gs_whereis(rt, "ghost", &got), GS_ENOENT);
    /* A new server in the dead one's slot does not inherit anything. */
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, "ghost", b), GS_OK);
    cr_assert_eq(gs_whereis(rt, "ghost", &got), GS_OK);
    cr_assert_eq(got, b);
    rt_free(rt);
}

/* `how`: 0 gs_stop, 1 crash, 2 kill, 3 GS_STOP return. */
static void exit_releases(unsigned workers, int how)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    snprintf(g_watch_name, sizeof g_watch_name, "released-%d", how);
    cr_assert_eq(gs_register(rt, g_watch_name, a), GS_OK);
    gs_ref ref = monitor_ok(rt, w, a);
    ping_ok(rt, a);
    gs_pid got = 0;
    if (how == 0) {
        stop_ok(rt, a);
        /* gs_stop returned: the server has terminated, its name is free. */
        cr_assert_eq(gs_whereis(rt, g_watch_name, &got), GS_ENOENT, "name still registered after gs_stop");
    } else if (how == 1) {
        cast_int(rt, a, P_CRASH, GS_EAGAIN);
    } else if (how == 2) {
        cr_assert_eq(gs_kill(rt, a), GS_OK);
    } else {
        cast_int(rt, a, P_STOP, 0);
    }
    cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 10000));
    ev e;
    cr_assert(ev_find(w, GS_TAG_DOWN, &e));
    cr_assert_eq(e.down.ref, ref);
    cr_assert_eq(e.whereis_rc, GS_ENOENT,
                 "in the DOWN handler gs_whereis gave %d (pid %" PRIx64 "): the name outlived the monitor",
                 e.whereis_rc, e.whereis_pid);
    cr_assert_eq(gs_whereis(rt, g_watch_name, &got), GS_ENOENT);
    cr_assert_eq(gs_unregister(rt, g_watch_name), GS_ENOENT);
    /* The same name for a new server. */
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, g_watch_name, b), GS_OK);
    cr_assert_eq(gs_whereis(rt, g_watch_name, &got), GS_OK);
    cr_assert_eq(got, b);
    rt_free(rt);
}

Test(names, released_at_gs_stop_before_down_1_worker, .timeout = 20) { exit_releases(1, 0); }
Test(names, released_at_gs_stop_before_down_2_workers, .timeout = 20) { exit_releases(2, 0); }
Test(names, released_at_crash_before_down, .timeout = 20) { exit_releases(2, 1); }
Test(names, released_at_kill_before_down, .timeout = 20) { exit_releases(2, 2); }
Test(names, released_at_stop_return_before_down, .timeout = 20) { exit_releases(1, 3); }

/* The supervisor pattern: in the DOWN handler, register the same name for
 * a replacement: never GS_EEXIST. Many rounds, 1 and 2 workers. */
static void reregister_in_down(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    snprintf(g_watch_name, sizeof g_watch_name, "restartable");
    gs_pid cur = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, g_watch_name, cur), GS_OK);
    for (int round = 0; round < 100; round++) {
        gs_pid next = start_ok(rt, &probe_ops, NULL);
        atomic_store(&g_reg_pid, next);
        monitor_ok(rt, w, cur);
        ping_ok(rt, cur); /* the monitor has reached cur (see test_kill: queued messages at gs_kill) */
        if (round % 3 == 0)
            cast_int(rt, cur, P_CRASH, GS_EAGAIN);
        else if (round % 3 == 1)
            cr_assert_eq(gs_kill(rt, cur), GS_OK);
        else
            stop_ok(rt, cur);
        cr_assert(wait_ev(w, GS_TAG_DOWN, round + 1, 10000), "round %d: no DOWN", round);
        pthread_mutex_lock(&g_ev_mu);
        ev e = g_ev[g_nev - 1];
        pthread_mutex_unlock(&g_ev_mu);
        cr_assert_eq(e.down.pid, cur);
        cr_assert_eq(e.whereis_rc, GS_ENOENT, "round %d: whereis in DOWN gave %d", round, e.whereis_rc);
        cr_assert_eq(e.reg_rc, GS_OK, "round %d: re-registering in DOWN gave %d (%s)", round, e.reg_rc,
                     gs_strerror(e.reg_rc));
        gs_pid got = 0;
        cr_assert_eq(gs_whereis(rt, g_watch_name, &got), GS_OK);
        cr_assert_eq(got, next);
        cur = next;
    }
    rt_free(rt);
}

Test(names, reregister_in_down_handler_1_worker, .timeout = 60) { reregister_in_down(1); }
Test(names, reregister_in_down_handler_2_workers, .timeout = 60) { reregister_in_down(2); }

Test(names, cast_and_call_by_name, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, "by-name", a), GS_OK);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(gs_cast_name(rt, "by-name", P_NOTE, NULL, 0), GS_OK);
    gs_pid arg = GS_NOPID;
    int64_t out[2] = {1, 1};
    size_t len = 0;
    cr_assert_eq(gs_call_name(rt, "by-name", K_PING, &arg, sizeof arg, out, sizeof out, &len, 5000), GS_OK);
    cr_assert_eq(len, sizeof out);
    cr_assert_eq(out[0], 0);
    cr_assert_eq(atomic_load(&g_notes), 10, "casts by name before the call by name were handled");
    /* Exactly as gs_cast / gs_call otherwise. */
    cr_assert_eq(gs_cast_name(rt, "by-name", GS_TAG_DOWN, NULL, 0), GS_EINVAL);
    cr_assert_eq(gs_call_name(rt, "by-name", K_PING, NULL, 4, out, sizeof out, NULL, 5000), GS_EINVAL);
    cr_assert_eq(gs_call_name(rt, "by-name", K_PING, &arg, sizeof arg, out, 4, &len, 5000), GS_EMSGSIZE);
    /* Unknown names. */
    cr_assert_eq(gs_cast_name(rt, "nobody", P_NOTE, NULL, 0), GS_ENOPROC);
    cr_assert_eq(gs_call_name(rt, "nobody", K_PING, &arg, sizeof arg, out, sizeof out, NULL, 5000), GS_ENOPROC);
    /* After the server stopped. */
    stop_ok(rt, a);
    cr_assert_eq(gs_cast_name(rt, "by-name", P_NOTE, NULL, 0), GS_ENOPROC);
    cr_assert_eq(gs_call_name(rt, "by-name", K_PING, &arg, sizeof arg, out, sizeof out, NULL, 5000), GS_ENOPROC);
    rt_free(rt);
}

Test(names, call_name_from_a_callback_path_works, .timeout = 20)
{
    /* gs_call_name / gs_cast_name between threads: a second thread. */
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, "remote", a), GS_OK);
    int64_t out[2];
    gs_pid arg = GS_NOPID;
    for (int i = 0; i < 100; i++)
        cr_assert_eq(gs_call_name(rt, "remote", K_PING, &arg, sizeof arg, out, sizeof out, NULL, 5000), GS_OK);
    rt_free(rt);
}

Test(names, several_names_for_one_server, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    const char *names[] = {"n1", "n2", "n3", "n4"};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gs_register(rt, names[i], a), GS_OK);
    gs_pid got;
    for (int i = 0; i < 4; i++) {
        got = 0;
        cr_assert_eq(gs_whereis(rt, names[i], &got), GS_OK);
        cr_assert_eq(got, a);
    }
    cr_assert_eq(gs_unregister(rt, "n2"), GS_OK);
    cr_assert_eq(gs_whereis(rt, "n2", &got), GS_ENOENT);
    cr_assert_eq(gs_whereis(rt, "n3", &got), GS_OK);
    snprintf(g_watch_name, sizeof g_watch_name, "n4");
    monitor_ok(rt, w, a);
    cast_int(rt, a, P_CRASH, GS_EAGAIN);
    cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 10000));
    ev e;
    cr_assert(ev_find(w, GS_TAG_DOWN, &e));
    cr_assert_eq(e.whereis_rc, GS_ENOENT);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gs_whereis(rt, names[i], &got), GS_ENOENT, "%s survived its server", names[i]);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gs_register(rt, names[i], b), GS_OK);
    rt_free(rt); /* names of live servers at runtime stop: ASan checks they are freed */
}

Test(names, runtimes_have_separate_registries, .timeout = 20)
{
    probe_reset();
    gs_runtime *r1 = rt_new(1);
    gs_runtime *r2 = rt_new(1);
    gs_pid a = start_ok(r1, &probe_ops, NULL);
    gs_pid b = start_ok(r2, &probe_ops, NULL);
    cr_assert_eq(gs_register(r1, "same", a), GS_OK);
    cr_assert_eq(gs_register(r2, "same", b), GS_OK);
    gs_pid got = 0;
    cr_assert_eq(gs_whereis(r1, "same", &got), GS_OK);
    cr_assert_eq(got, a);
    cr_assert_eq(gs_whereis(r2, "same", &got), GS_OK);
    cr_assert_eq(got, b);
    /* A pid of another runtime cannot be registered. */
    cr_assert_eq(gs_register(r1, "foreign", b), GS_ENOPROC);
    rt_free(r1);
    rt_free(r2);
}

/* ---- concurrent lookups while names come and go --------------------- */

#define NNAMES 8
#define NREADERS 4

static gs_runtime *g_crt;
static gs_pid g_owner[NNAMES]; /* name k is only ever registered to g_owner[k] */
static gs_pid g_stable;
static atomic_int g_stop_readers;
static atomic_long g_bad, g_hits, g_misses, g_stable_bad;

static void *reader_thread(void *p)
{
    uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)((intptr_t)p + 1);
    char name[32];
    while (!atomic_load(&g_stop_readers)) {
        int k = (int)(xorshift64(&rng) % NNAMES);
        snprintf(name, sizeof name, "churn-%d", k);
        gs_pid got = 0;
        int rc = gs_whereis(g_crt, name, &got);
        if (rc == GS_OK) {
            atomic_fetch_add(&g_hits, 1);
            if (got != g_owner[k])
                atomic_fetch_add(&g_bad, 1);
        } else if (rc == GS_ENOENT) {
            atomic_fetch_add(&g_misses, 1);
        } else {
            atomic_fetch_add(&g_bad, 1);
        }
        got = 0;
        if (gs_whereis(g_crt, "stable", &got) != GS_OK || got != g_stable)
            atomic_fetch_add(&g_stable_bad, 1);
        if (xorshift64(&rng) % 64 == 0) {
            int64_t out[2];
            gs_pid arg = GS_NOPID;
            if (gs_call_name(g_crt, "stable", K_PING, &arg, sizeof arg, out, sizeof out, NULL, 10000) != GS_OK)
                atomic_fetch_add(&g_stable_bad, 1);
            rc = gs_cast_name(g_crt, name, P_NOTE, NULL, 0);
            if (rc != GS_OK && rc != GS_ENOPROC)
                atomic_fetch_add(&g_bad, 1);
        }
    }
    return NULL;
}

static void concurrent_lookups(unsigned workers)
{
    probe_reset();
    g_crt = rt_new(workers);
    atomic_store(&g_stop_readers, 0);
    atomic_store(&g_bad, 0);
    atomic_store(&g_hits, 0);
    atomic_store(&g_misses, 0);
    atomic_store(&g_stable_bad, 0);
    for (int k = 0; k < NNAMES; k++)
        g_owner[k] = start_ok(g_crt, &probe_ops, NULL);
    g_stable = start_ok(g_crt, &probe_ops, NULL);
    cr_assert_eq(gs_register(g_crt, "stable", g_stable), GS_OK);
    pthread_t th[NREADERS];
    for (int i = 0; i < NREADERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, reader_thread, (void *)(intptr_t)i), 0);
    bool registered[NNAMES] = {false};
    uint64_t rng = 12345;
    char name[32];
    int wrong = 0;
    for (int i = 0; i < 20000; i++) {
        int k = (int)(xorshift64(&rng) % NNAMES);
        snprintf(name, sizeof name, "churn-%d", k);
        if (registered[k]) {
            if (gs_unregister(g_crt, name) != GS_OK)
                wrong++;
        } else {
            if (gs_register(g_crt, name, g_owner[k]) != GS_OK)
                wrong++;
        }
        registered[k] = !registered[k];
        /* Our own view is exact. */
        gs_pid got = 0;
        int rc = gs_whereis(g_crt, name, &got);
        if (registered[k] ? (rc != GS_OK || got != g_owner[k]) : rc != GS_ENOENT)
            wrong++;
    }
    atomic_store(&g_stop_readers, 1);
    for (int i = 0; i < NREADERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(wrong, 0, "%d register/unregister/whereis results were wrong on the writer", wrong);
    cr_assert_eq(atomic_load(&g_bad), 0, "%ld lookups returned a wrong pid or status", atomic_load(&g_bad));
    cr_assert_eq(atomic_load(&g_stable_bad), 0);
    cr_assert_gt(atomic_load(&g_hits), 0);
    cr_assert_gt(atomic_load(&g_misses), 0);
    /* Stopping owners while readers could still look: names vanish. */
    for (int k = 0; k < NNAMES; k++) {
        stop_ok(g_crt, g_owner[k]);
        snprintf(name, sizeof name, "churn-%d", k);
        gs_pid got;
        cr_assert_eq(gs_whereis(g_crt, name, &got), GS_ENOENT);
    }
    rt_free(g_crt);
}

Test(names, concurrent_whereis_while_registering_1_worker, .timeout = 120) { concurrent_lookups(1); }
Test(names, concurrent_whereis_while_registering_2_workers, .timeout = 120) { concurrent_lookups(2); }

/* Registering races with the server's exit: either the registration
 * fails with GS_ENOPROC, or it succeeded and the exit releases it. */
Test(names, register_racing_with_exit, .timeout = 60)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    for (int round = 0; round < 500; round++) {
        gs_pid a = start_ok(rt, &probe_ops, NULL);
        char name[32];
        snprintf(name, sizeof name, "race-%d", round);
        cast_int(rt, a, P_STOP, 0);
        int rc = gs_register(rt, name, a);
        cr_assert(rc == GS_OK || rc == GS_ENOPROC, "round %d: %d", round, rc);
        cr_assert(wait_dead(rt, a, 5000));
        gs_pid got;
        /* The server is gone (casts fail): its name must be too. Allow
         * the exit path a moment to finish after the slot closed. */
        int64_t end = now_ms() + 5000;
        while (gs_whereis(rt, name, &got) == GS_OK && now_ms() < end)
            sleep_ms(1);
        cr_assert_eq(gs_whereis(rt, name, &got), GS_ENOENT, "round %d: a dead server kept its name", round);
    }
    rt_free(rt);
}
