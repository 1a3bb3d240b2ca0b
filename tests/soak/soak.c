/* soak.c - a seeded, randomized soak of the whole public API with exact
 * accounting.
 *
 *   soak [--seconds N] [--seed S] [--servers K] [--workers W] [--drivers D]
 *
 * Defaults: 30 s, a seed taken from the clock (printed at start), K = 2000
 * server slots, W = 2 runtime workers, D = 4 driver threads.
 *
 * D driver threads run a random mix over K server slots: start (some inits
 * refuse, quietly or with an error), gs_stop, casts (sequence-numbered, of
 * varying size), calls (immediate replies, replies deferred to another
 * thread, replies deferred to handle_info through a gs_send_after to self,
 * server-to-server calls made from inside handle_call, replies larger than
 * the caller's buffer), with and without timeouts, gs_send_after,
 * gs_cancel_timer (also twice, also of a handle that never existed), crash
 * (a cast whose handler returns a negative code), a cast whose handler
 * returns GS_STOP, gs_kill, gs_monitor (from a driver thread naming a
 * watcher server, or from inside a watcher's handle_call) and gs_demonitor
 * (also twice). Slot s is owned by driver s % D: only its owner starts,
 * stops, crashes or kills it, so that the owner knows exactly when each of
 * its servers ended; every driver casts, calls, arms timers on and
 * monitors any slot, also stale pids of slots whose server has gone.
 *
 * Every server start is an "incarnation" with its own counters, kept
 * outside the servers in tables indexed by an id passed as init's
 * argument. After the drivers stop, a quiet phase waits for what is still
 * due (crashes being handled, short timers, DOWN messages); then
 * gs_runtime_stop, then the accounting is checked exactly:
 *   - casts: handled <= accepted (GS_OK) for every incarnation and every
 *     sender; for each sender the handled sequence numbers strictly
 *     increase (FIFO, no duplicates); all the owner's casts accepted
 *     before its gs_stop / crash cast / stop cast were handled (a stop
 *     request or a crash is queued behind them); for servers alive at
 *     gs_runtime_stop every accepted cast of every sender was handled;
 *     killed servers: handled <= accepted only;
 *   - every message (cast, call, timer) reached the incarnation its pid
 *     named, never a later server in the same slot;
 *   - calls: each returned GS_OK with the right echo, or GS_ETIMEDOUT,
 *     GS_ENOPROC, GS_EMSGSIZE (only when the reply buffer was too small)
 *     and never GS_ETIMEDOUT / GS_ENOPROC for a live server of the caller
 *     called with GS_INFINITY; for deferred replies (from another thread,
 *     from handle_info) the number of answers the callers got equals the
 *     number of gs_reply calls that returned GS_OK (a reply is never both
 *     "delivered" and lost to a timeout); for replies from the call's own
 *     handle_call, answers <= GS_OK replies (the library returns GS_OK
 *     there even when the caller gave up, see final_checks); a second
 *     gs_reply to the same `from` is always GS_ENOENT;
 *   - timers: fired at most once; never both fired and cancelled with
 *     GS_OK; a GS_ENOENT cancel means fired or its server ended; every
 *     timer of a server still alive fired (within the quiet phase);
 *   - terminate ran exactly once, with the expected reason, for every
 *     successful start that was not killed, and never for refused inits
 *     or killed servers; init ran exactly once per start;
 *   - DOWN: exactly one per monitor of a server that ended before the
 *     quiet phase, unless gs_demonitor returned GS_OK (then none); at most
 *     one for servers that ended at gs_runtime_stop; each with the right
 *     pid and the exit reason (or GS_ENOPROC when monitored after death);
 *   - no warning was logged (the library warns only about misbehaving
 *     callbacks, and these callbacks behave).
 *
 * Reproduction: each driver draws from its own RNG seeded from S and its
 * index, and draws a fixed number of values per operation whatever the
 * outcomes, and its own slots' state depends only on its own operations.
 * The same seed therefore gives every driver the same sequence of
 * operations (kind, slot, payload, timeout, ...); the thread interleaving,
 * and so what a cross-driver operation meets, differs from run to run:
 * reproduction is of the operation sequence, not of the timing. Run a
 * failing seed a few times (and under the same sanitizer) to reproduce.
 *
 * Any failure prints "soak: FAILED (seed S): reason" and exits 1; a
 * watchdog alarm turns a hang into such a failure.
 */
#define _GNU_SOURCE 1

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "genserver.h"

/* ------------------------------------------------------------------ */
/* Parameters                                                          */
/* ------------------------------------------------------------------ */

enum {
    MAXD = 8,           /* drivers at most */
    NWATCH = 8,         /* watcher servers */
    CH_BITS = 14,       /* records per table chunk: 16384 */
    CH_MAX = 1 << 14,   /* chunks per table: 268M records */
    MAXPEND = 8,        /* deferred-by-timer replies a server holds at once */
    MAXPAY = 256,       /* largest extra cast payload */
    RECENT = 64,        /* cancel / demonitor pick among the last RECENT */
};

#define CRASH_CODE (-55)
#define REFUSE_CODE (-77)
#define USER_REASON 42
#define NOT_RUN 12345
#define STOP_TIMEOUT_MS 60000

/* cast tags */
enum { C_DATA = 1, C_CRASH = 2, C_STOPRET = 3 };
/* call tags (the kind of call) */
enum { K_ECHO = 10, K_DEFER_THREAD = 11, K_DEFER_TIMER = 12, K_NESTED = 13, K_SMALLCAP = 14,
       W_MONITOR = 20 };
/* info tags */
enum { I_TICK = 30, I_DEFER = 31 };
/* how a call was answered */
enum { P_IMMEDIATE = 0, P_THREAD = 1, P_INFO = 2 };

/* how an incarnation ended */
enum { E_ALIVE = 0, E_REFUSED, E_STOP, E_CRASH, E_STOPRET, E_KILL };
/* init modes */
enum { M_NORMAL = 0, M_REFUSE_STOP, M_REFUSE_ERR };

static uint64_t g_seed;
static int g_seconds = 30;
static int g_nslots = 2000;
static int g_workers = 2;
static int g_ndrivers = 4;
static gs_runtime *g_rt;
static atomic_int g_stop_drivers;

/* ------------------------------------------------------------------ */
/* Failure                                                             */
/* ------------------------------------------------------------------ */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "soak: FAILED (seed %" PRIu64 "): %s\n", g_seed, buf);
    fflush(stderr);
    fflush(stdout);
    _exit(1);
}

static char g_alarm_msg[160];
static size_t g_alarm_len;

static void on_alarm(int sig)
{
    (void)sig;
    ssize_t w = write(2, g_alarm_msg, g_alarm_len);
    (void)w;
    _exit(1);
}

/* ------------------------------------------------------------------ */
/* RNG (xorshift64*) and time                                          */
/* ------------------------------------------------------------------ */

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t seed_for(uint64_t seed, int idx)
{
    uint64_t s = seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(idx + 1));
    s ^= s >> 31;
    s *= 0xBF58476D1CE4E5B9ULL;
    s ^= s >> 29;
    return s ? s : 0x1234567;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ */
/* Chunked record tables: appended by one driver, read by anyone        */
/* ------------------------------------------------------------------ */

typedef struct ctab {
    _Atomic(char *) ch[CH_MAX];
    size_t esz;
    uint32_t n; /* records appended; owner only (main reads after join) */
} ctab;

static void *ctab_at(ctab *t, uint32_t i)
{
    char *c = atomic_load_explicit(&t->ch[i >> CH_BITS], memory_order_acquire);
    if (!c)
        fail("record %u of a table read before it was written", i);
    return c + (size_t)(i & ((1u << CH_BITS) - 1)) * t->esz;
}

/* Appends a zeroed record; only the owning driver calls this. */
static void *ctab_add(ctab *t, uint32_t *idx)
{
    uint32_t i = t->n;
    if ((i >> CH_BITS) >= CH_MAX)
        fail("record table full");
    if (!atomic_load_explicit(&t->ch[i >> CH_BITS], memory_order_relaxed)) {
        char *c = calloc((size_t)1 << CH_BITS, t->esz);
        if (!c)
            fail("out of memory for records");
        atomic_store_explicit(&t->ch[i >> CH_BITS], c, memory_order_release);
    }
    t->n = i + 1;
    *idx = i;
    return ctab_at(t, i);
}

static void ctab_free(ctab *t)
{
    for (int i = 0; i < CH_MAX; i++)
        free(atomic_load(&t->ch[i]));
}

/* Global ids: driver in the top bits. */
#define GID(d, i) (((uint32_t)(d) << 28) | (uint32_t)(i))
#define GID_D(g) ((int)((g) >> 28))
#define GID_I(g) ((g) & ((1u << 28) - 1))
#define NO_GID UINT32_MAX

/* ------------------------------------------------------------------ */
/* Records                                                             */
/* ------------------------------------------------------------------ */

typedef struct inc_rec {
    gs_pid pid;            /* written by the owner before publication */
    int slot, mode;
    int end_kind;          /* owner only (main reads after join) */
    int end_reason;        /* the exit reason expected */
    long owner_snapshot;   /* owner's accepted casts when it ended the server */
    long next_seq[MAXD];   /* cast sequence per sender; sender only */
    atomic_long accepted[MAXD];
    atomic_long handled[MAXD];
    atomic_int init_runs;
    atomic_int term_runs;
    atomic_int term_reason;
} inc_rec;

typedef struct timer_rec {
    gs_timer h;
    uint32_t inc;  /* gid or NO_GID */
    int send_rc;
    int cancel_rc;  /* NOT_RUN or the first gs_cancel_timer's code */
    int cancel2_rc; /* NOT_RUN or the second */
    atomic_int fired;
} timer_rec;

typedef struct mon_rec {
    gs_ref ref;
    uint32_t inc;
    int watcher;
    int mon_rc;
    int demon_rc;
    int demon2_rc;
} mon_rec;

static ctab *g_incs[MAXD], *g_timers[MAXD], *g_mons[MAXD];
static atomic_uint *g_slot_inc; /* latest incarnation gid of each slot, NO_GID if none */

static inc_rec *inc_get(uint32_t gid) { return ctab_at(g_incs[GID_D(gid)], GID_I(gid)); }

/* ------------------------------------------------------------------ */
/* Counters                                                            */
/* ------------------------------------------------------------------ */

/* Operation kinds (driver side) and outcomes. */
enum { O_START, O_STOP, O_STOP2, O_CAST, O_CALL_ECHO, O_CALL_DEFT, O_CALL_DEFI, O_CALL_NEST,
       O_CALL_SMALL, O_SEND_AFTER, O_CANCEL, O_CANCEL2, O_CRASH, O_STOPRET, O_KILL, O_MONITOR,
       O_DEMONITOR, O_DEMONITOR2, O_NKINDS };
static const char *const g_kind_name[O_NKINDS] = {
    "start", "stop", "stop-again", "cast", "call-echo", "call-defer-thread", "call-defer-info",
    "call-nested", "call-smallcap", "send_after", "cancel", "cancel-again", "crash",
    "stop-return", "kill", "monitor", "demonitor", "demonitor-again"};
enum { R_OTHER = 16, R_REFUSED = 17, R_SKIP = 18, R_N = 19 };
static const char *const g_rc_name[R_N] = {
    "ok", "einval", "enomem", "enoproc", "etimedout", "edeadlk", "emsgsize", "eshutdown",
    "ecanceled", "enoent", "eexist", "eagain", "enoreply", "enotsup", "elimit", "ebadreturn",
    "other", "refused", "skipped"};

static int rc_idx(int rc)
{
    if (rc == REFUSE_CODE)
        return R_REFUSED;
    if (rc <= 0 && rc >= -15)
        return -rc;
    return R_OTHER;
}

static long g_count[MAXD][O_NKINDS][R_N]; /* each driver its own row */

/* Server side. */
static atomic_long g_casts_handled, g_calls_handled, g_ticks, g_defer_info;
static atomic_long g_reply_ok_drv, g_reply_enoent_drv;   /* gs_reply to drivers' calls */
static atomic_long g_reply_ok_path[3];                   /* ... GS_OK by reply path */
static atomic_long g_reply_ok_srv, g_reply_enoent_srv;   /* gs_reply to servers' calls */
static atomic_long g_nested_rc[R_N];                     /* inner gs_call outcomes */
static atomic_long g_double_reply;                       /* second gs_reply (GS_ENOENT) */
static atomic_long g_total_downs;
static long g_drv_call_answered[MAXD]; /* GS_OK or GS_EMSGSIZE, per driver */
static long g_drv_answered_path[MAXD][3]; /* ... by reply path */
static atomic_long g_log[4];
static char g_first_warning[512];
static atomic_int g_have_warning;

static void logger(void *user, int level, const char *line)
{
    (void)user;
    if (level >= 0 && level < 4)
        atomic_fetch_add(&g_log[level], 1);
    if (level == GS_LOG_WARNING && line) {
        int exp = 0;
        if (atomic_compare_exchange_strong(&g_have_warning, &exp, 1))
            snprintf(g_first_warning, sizeof g_first_warning, "%s", line);
    }
}

/* ------------------------------------------------------------------ */
/* Payloads                                                            */
/* ------------------------------------------------------------------ */

typedef struct cast_pay {
    uint32_t gid; /* the incarnation the sender meant */
    uint32_t sender;
    int64_t seq;
    uint32_t extra; /* bytes of pattern that follow */
    uint32_t pad;
} cast_pay;

typedef struct call_pay {
    uint32_t gid;
    uint32_t nested_gid;
    uint64_t v;
    gs_pid nested_pid;
    int nested_timeout;
    int pad;
} call_pay;

typedef struct call_rep {
    uint32_t gid;
    int32_t nested_rc;
    uint64_t v;
    uint32_t path; /* P_*: how the reply was sent */
    uint32_t pad;
} call_rep;

typedef struct tick_pay {
    uint32_t driver;
    uint32_t idx; /* in the driver's timer table */
    uint32_t gid;
    uint32_t pad;
} tick_pay;

/* ------------------------------------------------------------------ */
/* Replier thread (replies deferred with GS_NOREPLY)                    */
/* ------------------------------------------------------------------ */

typedef struct defer_item {
    struct defer_item *next;
    gs_from from;
    call_rep rep;
    int twice;
} defer_item;

static pthread_mutex_t g_dq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_dq_cv = PTHREAD_COND_INITIALIZER;
static defer_item *g_dq_head, *g_dq_tail;
static int g_dq_done;

static void dq_push(defer_item *it)
{
    pthread_mutex_lock(&g_dq_mu);
    it->next = NULL;
    if (g_dq_tail)
        g_dq_tail->next = it;
    else
        g_dq_head = it;
    g_dq_tail = it;
    pthread_cond_signal(&g_dq_cv);
    pthread_mutex_unlock(&g_dq_mu);
}

static void count_drv_reply(int rc, int path, const char *where)
{
    if (rc == GS_OK) {
        atomic_fetch_add(&g_reply_ok_drv, 1);
        atomic_fetch_add(&g_reply_ok_path[path], 1);
    }
    else if (rc == GS_ENOENT)
        atomic_fetch_add(&g_reply_enoent_drv, 1);
    else
        fail("%s: gs_reply returned %d (%s), expected GS_OK or GS_ENOENT", where, rc,
             gs_strerror(rc));
}

static void *replier(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&g_dq_mu);
        while (!g_dq_head && !g_dq_done)
            pthread_cond_wait(&g_dq_cv, &g_dq_mu);
        defer_item *it = g_dq_head;
        if (it) {
            g_dq_head = it->next;
            if (!g_dq_head)
                g_dq_tail = NULL;
        }
        pthread_mutex_unlock(&g_dq_mu);
        if (!it)
            return NULL;
        int rc = gs_reply(g_rt, it->from, &it->rep, sizeof it->rep);
        count_drv_reply(rc, P_THREAD, "deferred reply from another thread");
        if (it->twice) {
            rc = gs_reply(g_rt, it->from, &it->rep, sizeof it->rep);
            if (rc != GS_ENOENT)
                fail("second gs_reply to the same from returned %d (%s), expected GS_ENOENT", rc,
                     gs_strerror(rc));
            atomic_fetch_add(&g_double_reply, 1);
        }
        free(it);
    }
}

/* ------------------------------------------------------------------ */
/* The soak server                                                     */
/* ------------------------------------------------------------------ */

typedef struct pend {
    gs_from from;
    call_rep rep;
} pend;

typedef struct sstate {
    uint32_t gid;
    int64_t last_seq[MAXD];
    pend pending[MAXPEND];
    int npend, head;
} sstate;

static int s_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    sstate *s = state;
    uint32_t gid = *(const uint32_t *)arg;
    inc_rec *r = inc_get(gid);
    s->gid = gid;
    for (int i = 0; i < MAXD; i++)
        s->last_seq[i] = 0;
    atomic_fetch_add(&r->init_runs, 1);
    if (r->mode == M_REFUSE_STOP)
        return GS_STOP;
    if (r->mode == M_REFUSE_ERR)
        return REFUSE_CODE;
    return GS_OK;
}

static int s_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    sstate *s = state;
    if (msg->tag == C_CRASH)
        return CRASH_CODE;
    if (msg->tag == C_STOPRET)
        return GS_STOP;
    if (msg->tag != C_DATA || msg->len < sizeof(cast_pay))
        fail("cast with tag %u len %zu", (unsigned)msg->tag, msg->len);
    cast_pay p;
    memcpy(&p, msg->data, sizeof p);
    if (p.gid != s->gid)
        fail("a cast for incarnation %#x reached incarnation %#x", p.gid, s->gid);
    if (msg->len != sizeof p + p.extra || p.sender >= (uint32_t)g_ndrivers)
        fail("cast payload len %zu, extra %u, sender %u", msg->len, p.extra, p.sender);
    const unsigned char *x = (const unsigned char *)msg->data + sizeof p;
    for (uint32_t i = 0; i < p.extra; i++)
        if (x[i] != (unsigned char)(p.seq + i))
            fail("cast payload corrupted at byte %u", i);
    if (p.seq <= s->last_seq[p.sender])
        fail("incarnation %#x: cast seq %" PRId64 " from driver %u after seq %" PRId64
             " (duplicate or out of order)",
             s->gid, p.seq, p.sender, s->last_seq[p.sender]);
    s->last_seq[p.sender] = p.seq;
    atomic_fetch_add(&inc_get(s->gid)->handled[p.sender], 1);
    atomic_fetch_add(&g_casts_handled, 1);
    return GS_OK;
}

static int s_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    sstate *s = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (msg->len != sizeof(call_pay))
        fail("call with tag %u len %zu", (unsigned)msg->tag, msg->len);
    call_pay p;
    memcpy(&p, msg->data, sizeof p);
    if (p.gid != s->gid)
        fail("a call for incarnation %#x reached incarnation %#x", p.gid, s->gid);
    atomic_fetch_add(&g_calls_handled, 1);
    call_rep rep = {s->gid, 0, p.v * 2 + 1, P_IMMEDIATE, 0};
    bool from_server = msg->sender != GS_NOPID;
    switch (msg->tag) {
    case K_ECHO:
    case K_SMALLCAP:
        break;
    case K_DEFER_THREAD: {
        defer_item *it = calloc(1, sizeof *it);
        if (!it)
            fail("out of memory");
        it->from = from;
        it->rep = rep;
        it->rep.path = P_THREAD;
        it->twice = (p.v & 7) == 0;
        dq_push(it);
        return GS_NOREPLY;
    }
    case K_DEFER_TIMER:
        if (s->npend < MAXPEND) {
            int slot = (s->head + s->npend) % MAXPEND;
            s->pending[slot].from = from;
            s->pending[slot].rep = rep;
            s->pending[slot].rep.path = P_INFO;
            s->npend++;
            int rc = gs_send_after(rt, gs_self(ctx), I_DEFER, NULL, 0, (int)(p.v % 20), NULL);
            if (rc != GS_OK)
                fail("gs_send_after to self from handle_call returned %d (%s)", rc,
                     gs_strerror(rc));
            return GS_NOREPLY;
        }
        break; /* full: answer at once */
    case K_NESTED: {
        call_pay q = {p.nested_gid, 0, p.v + 7, GS_NOPID, 0, 0};
        call_rep r2;
        memset(&r2, 0, sizeof r2);
        size_t len = 0;
        int rc = gs_call(rt, p.nested_pid, K_ECHO, &q, sizeof q, &r2, sizeof r2, &len,
                         p.nested_timeout);
        atomic_fetch_add(&g_nested_rc[rc_idx(rc)], 1);
        if (rc == GS_OK) {
            if (len != sizeof r2 || r2.gid != p.nested_gid || r2.v != q.v * 2 + 1)
                fail("nested call: reply gid %#x v %" PRIu64 " len %zu, expected gid %#x v %" PRIu64,
                     r2.gid, r2.v, len, p.nested_gid, q.v * 2 + 1);
        } else if (p.nested_pid == gs_self(ctx)) {
            if (rc != GS_EDEADLK)
                fail("a server calling itself got %d (%s), expected GS_EDEADLK", rc,
                     gs_strerror(rc));
        } else if (p.nested_pid == GS_NOPID) {
            if (rc != GS_ENOPROC)
                fail("nested call to GS_NOPID got %d (%s)", rc, gs_strerror(rc));
        } else if (rc != GS_ETIMEDOUT && rc != GS_ENOPROC && rc != GS_EKILLED) {
            /* GS_EKILLED: gs_kill removed this server meanwhile, and ends
             * the calls its callback makes. */
            fail("nested call returned %d (%s), expected GS_OK, GS_ETIMEDOUT, GS_ENOPROC or GS_EKILLED", rc,
                 gs_strerror(rc));
        }
        rep.nested_rc = rc;
        break;
    }
    default:
        fail("call with tag %u", (unsigned)msg->tag);
    }
    int rc = gs_reply(rt, from, &rep, sizeof rep);
    if (from_server) {
        if (rc == GS_OK)
            atomic_fetch_add(&g_reply_ok_srv, 1);
        else if (rc == GS_ENOENT)
            atomic_fetch_add(&g_reply_enoent_srv, 1);
        else
            fail("gs_reply to a server returned %d (%s)", rc, gs_strerror(rc));
    } else {
        count_drv_reply(rc, P_IMMEDIATE, "reply from handle_call");
    }
    return GS_OK;
}

static int s_info(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    sstate *s = state;
    if (msg->tag == I_DEFER) {
        if (s->npend <= 0)
            fail("deferred-reply timer without a pending call");
        pend *pe = &s->pending[s->head];
        s->head = (s->head + 1) % MAXPEND;
        s->npend--;
        atomic_fetch_add(&g_defer_info, 1);
        count_drv_reply(gs_reply(gs_ctx_runtime(ctx), pe->from, &pe->rep, sizeof pe->rep),
                        P_INFO, "deferred reply from handle_info");
        return GS_OK;
    }
    if (msg->tag != I_TICK || msg->len != sizeof(tick_pay) || msg->sender != GS_NOPID)
        fail("info with tag %#x len %zu", (unsigned)msg->tag, msg->len);
    tick_pay t;
    memcpy(&t, msg->data, sizeof t);
    if (t.gid != s->gid)
        fail("a timer for incarnation %#x reached incarnation %#x", t.gid, s->gid);
    if (t.driver >= (uint32_t)g_ndrivers)
        fail("timer payload driver %u", t.driver);
    timer_rec *tr = ctab_at(g_timers[t.driver], t.idx);
    if (atomic_fetch_add(&tr->fired, 1) != 0)
        fail("timer %u/%u fired twice", t.driver, t.idx);
    atomic_fetch_add(&g_ticks, 1);
    return GS_OK;
}

static void s_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    sstate *s = state;
    inc_rec *r = inc_get(s->gid);
    atomic_store(&r->term_reason, reason);
    if (atomic_fetch_add(&r->term_runs, 1) != 0)
        fail("incarnation %#x: terminate ran twice", s->gid);
}

static const gs_server_ops soak_ops = {
    .name = "soak",
    .state_size = sizeof(sstate),
    .init = s_init,
    .handle_cast = s_cast,
    .handle_call = s_call,
    .handle_info = s_info,
    .terminate = s_terminate,
};

/* ------------------------------------------------------------------ */
/* Watchers                                                            */
/* ------------------------------------------------------------------ */

typedef struct down_rec {
    gs_ref ref;
    gs_pid pid;
    int reason;
    int watcher;
} down_rec;

typedef struct wlist {
    down_rec *v; /* touched only by the watcher's callbacks, then by main after stop */
    size_t n, cap;
} wlist;

static wlist g_wdown[NWATCH];
static gs_pid g_watcher[NWATCH];

typedef struct wstate {
    int idx;
} wstate;

typedef struct wmon_rep {
    gs_ref ref;
    int rc;
    int pad;
} wmon_rep;

static int w_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    ((wstate *)state)->idx = *(const int *)arg;
    return GS_OK;
}

static int w_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    (void)state;
    if (msg->tag != W_MONITOR || msg->len != sizeof(gs_pid))
        fail("watcher call tag %u len %zu", (unsigned)msg->tag, msg->len);
    gs_pid target;
    memcpy(&target, msg->data, sizeof target);
    wmon_rep rep = {0, 0, 0};
    rep.rc = gs_monitor(gs_ctx_runtime(ctx), gs_self(ctx), target, &rep.ref);
    int rc = gs_reply(gs_ctx_runtime(ctx), from, &rep, sizeof rep);
    if (rc != GS_OK)
        fail("watcher reply returned %d (%s) to a GS_INFINITY caller", rc, gs_strerror(rc));
    return GS_OK;
}

static int w_info(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    wstate *s = state;
    if (msg->tag != GS_TAG_DOWN || msg->len != sizeof(gs_down))
        fail("watcher info tag %#x len %zu", (unsigned)msg->tag, msg->len);
    gs_down d;
    memcpy(&d, msg->data, sizeof d);
    wlist *l = &g_wdown[s->idx];
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        down_rec *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            fail("out of memory for DOWN records");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (down_rec){d.ref, d.pid, d.reason, s->idx};
    atomic_fetch_add(&g_total_downs, 1);
    return GS_OK;
}

static const gs_server_ops watcher_ops = {
    .name = "soak-watcher",
    .state_size = sizeof(wstate),
    .init = w_init,
    .handle_call = w_call,
    .handle_info = w_info,
};

/* ------------------------------------------------------------------ */
/* Drivers                                                             */
/* ------------------------------------------------------------------ */

typedef struct driver {
    int id;
    uint64_t rng;
    long ops;
    int nown;
    uint32_t *own_gid; /* own slot j (slot id*... ) -> live incarnation gid or NO_GID */
} driver;

static const int g_timeouts[8] = {GS_INFINITY, GS_INFINITY, 2000, 2000, 20, 5, 1, 0};

#define COUNT(dv, kind, rc) (g_count[(dv)->id][(kind)][rc_idx(rc)]++)
#define COUNT_SKIP(dv, kind) (g_count[(dv)->id][(kind)][R_SKIP]++)

/* The incarnation currently (or last) in `slot`, its pid, and whether it
 * is one of this driver's own live servers. */
static uint32_t peek_slot(driver *dv, int slot, gs_pid *pid, bool *own_alive)
{
    uint32_t gid = atomic_load_explicit(&g_slot_inc[slot], memory_order_acquire);
    *pid = gid == NO_GID ? GS_NOPID : inc_get(gid)->pid;
    *own_alive = false;
    if (slot % g_ndrivers == dv->id) {
        uint32_t live = dv->own_gid[slot / g_ndrivers];
        *own_alive = live != NO_GID;
        if (live != NO_GID && live != gid)
            fail("slot table out of sync");
    }
    return gid;
}

static void end_own(driver *dv, int j, int kind, int reason)
{
    inc_rec *r = inc_get(dv->own_gid[j]);
    r->end_kind = kind;
    r->end_reason = reason;
    r->owner_snapshot = atomic_load(&r->accepted[dv->id]);
    dv->own_gid[j] = NO_GID;
}

static void op_cast(driver *dv, int slot, uint64_t b)
{
    gs_pid pid;
    bool own_alive;
    uint32_t gid = peek_slot(dv, slot, &pid, &own_alive);
    unsigned char buf[sizeof(cast_pay) + MAXPAY];
    cast_pay p = {gid, (uint32_t)dv->id, 0, 0, 0};
    inc_rec *r = gid == NO_GID ? NULL : inc_get(gid);
    p.seq = r ? ++r->next_seq[dv->id] : 1;
    p.extra = (b & 3) == 0 ? (uint32_t)((b >> 8) % (MAXPAY + 1)) : 0;
    memcpy(buf, &p, sizeof p);
    for (uint32_t i = 0; i < p.extra; i++)
        buf[sizeof p + i] = (unsigned char)(p.seq + i);
    int rc = gs_cast(g_rt, pid, C_DATA, buf, sizeof p + p.extra);
    COUNT(dv, O_CAST, rc);
    if (rc == GS_OK) {
        if (!r)
            fail("gs_cast to GS_NOPID returned GS_OK");
        atomic_fetch_add(&r->accepted[dv->id], 1);
    } else if (rc != GS_ENOPROC || own_alive) {
        fail("gs_cast to slot %d (%s) returned %d (%s)", slot, own_alive ? "own, live" : "any",
             rc, gs_strerror(rc));
    }
}

static void op_call(driver *dv, int slot, uint64_t b, uint64_t c)
{
    gs_pid pid;
    bool own_alive;
    uint32_t gid = peek_slot(dv, slot, &pid, &own_alive);
    int k = (int)(b % 100);
    int tag, kind;
    if (k < 45) {
        tag = K_ECHO;
        kind = O_CALL_ECHO;
    } else if (k < 60) {
        tag = K_DEFER_THREAD;
        kind = O_CALL_DEFT;
    } else if (k < 75) {
        tag = K_DEFER_TIMER;
        kind = O_CALL_DEFI;
    } else if (k < 95) {
        tag = K_NESTED;
        kind = O_CALL_NEST;
    } else {
        tag = K_SMALLCAP;
        kind = O_CALL_SMALL;
    }
    int timeout = g_timeouts[c & 7];
    call_pay p = {gid, NO_GID, c >> 8, GS_NOPID, 0, 0};
    if (tag == K_NESTED) {
        int s2 = (int)((c >> 16) % (uint64_t)g_nslots);
        if (((c >> 40) & 7) == 0)
            s2 = slot; /* sometimes the server calls itself: GS_EDEADLK */
        p.nested_gid = atomic_load_explicit(&g_slot_inc[s2], memory_order_acquire);
        p.nested_pid = p.nested_gid == NO_GID ? GS_NOPID : inc_get(p.nested_gid)->pid;
        p.nested_timeout = 10 + (int)((c >> 44) % 90);
    }
    call_rep rep;
    memset(&rep, 0, sizeof rep);
    size_t cap = tag == K_SMALLCAP ? 4 : sizeof rep;
    size_t len = 0;
    int rc = gs_call(g_rt, pid, (uint32_t)tag, &p, sizeof p, &rep, cap, &len, timeout);
    COUNT(dv, kind, rc);
    if (rc == GS_OK || rc == GS_EMSGSIZE) {
        g_drv_call_answered[dv->id]++;
        g_drv_answered_path[dv->id][rc == GS_OK && rep.path < 3 ? rep.path : P_IMMEDIATE]++;
    }
    if (pid == GS_NOPID) {
        if (rc != GS_ENOPROC)
            fail("gs_call to GS_NOPID returned %d (%s)", rc, gs_strerror(rc));
        return;
    }
    if (tag == K_SMALLCAP) {
        if (rc == GS_OK)
            fail("a 16-byte reply into a 4-byte buffer returned GS_OK");
        if (rc == GS_EMSGSIZE) {
            if (len != sizeof rep || rep.gid != gid)
                fail("truncated reply: len %zu, gid %#x (expected %zu, %#x)", len, rep.gid,
                     sizeof rep, gid);
            return;
        }
    }
    if (rc == GS_OK) {
        if (len != sizeof rep || rep.gid != gid || rep.v != p.v * 2 + 1)
            fail("call to slot %d: reply gid %#x v %" PRIu64 " len %zu, expected gid %#x v %" PRIu64,
                 slot, rep.gid, rep.v, len, gid, p.v * 2 + 1);
        if (tag == K_NESTED) {
            int nr = rep.nested_rc;
            /* GS_EKILLED: the server was killed while it made the call
             * (it may still answer ours before it goes). */
            bool ok = nr == GS_OK || nr == GS_ETIMEDOUT || nr == GS_ENOPROC || nr == GS_EDEADLK || nr == GS_EKILLED;
            if (!ok || (p.nested_pid == pid && nr != GS_EDEADLK))
                fail("nested rc %d (%s)", nr, gs_strerror(nr));
        }
        return;
    }
    if (rc == GS_ETIMEDOUT && timeout != GS_INFINITY)
        return;
    if (rc == GS_ENOPROC && !own_alive)
        return;
    fail("gs_call (kind %s, timeout %d) to slot %d (%s) returned %d (%s)", g_kind_name[kind],
         timeout, slot, own_alive ? "own, live" : "any", rc, gs_strerror(rc));
}

static void op_send_after(driver *dv, int slot, uint64_t b)
{
    gs_pid pid;
    bool own_alive;
    uint32_t gid = peek_slot(dv, slot, &pid, &own_alive);
    uint32_t idx;
    timer_rec *t = ctab_add(g_timers[dv->id], &idx);
    t->inc = gid;
    t->cancel_rc = t->cancel2_rc = NOT_RUN;
    tick_pay tp = {(uint32_t)dv->id, idx, gid, 0};
    int delay = (b & 15) == 0 ? 0 : (int)(b % 50);
    int rc = gs_send_after(g_rt, pid, I_TICK, &tp, sizeof tp, delay, &t->h);
    t->send_rc = rc;
    COUNT(dv, O_SEND_AFTER, rc);
    if (rc == GS_OK) {
        if (t->h == 0)
            fail("gs_send_after returned GS_OK and timer 0");
    } else if (rc != GS_ENOPROC) {
        fail("gs_send_after to slot %d returned %d (%s)", slot, rc, gs_strerror(rc));
    } else if (own_alive) {
        fail("gs_send_after to an own live server returned %d (%s)", rc, gs_strerror(rc));
    }
}

static void op_cancel(driver *dv, uint64_t b)
{
    ctab *tt = g_timers[dv->id];
    if (tt->n == 0) {
        COUNT_SKIP(dv, O_CANCEL);
        return;
    }
    uint32_t back = (uint32_t)(b % (tt->n < RECENT ? tt->n : RECENT));
    timer_rec *t = ctab_at(tt, tt->n - 1 - back);
    if (t->cancel_rc == NOT_RUN) {
        int rc = gs_cancel_timer(g_rt, t->h);
        t->cancel_rc = rc;
        COUNT(dv, O_CANCEL, rc);
        if (t->send_rc != GS_OK && rc != GS_ENOENT)
            fail("gs_cancel_timer of a timer never made (%" PRIu64 ") returned %d (%s)", t->h, rc,
                 gs_strerror(rc));
        if (rc != GS_OK && rc != GS_ENOENT)
            fail("gs_cancel_timer returned %d (%s)", rc, gs_strerror(rc));
        if (rc == GS_OK && atomic_load(&t->fired))
            fail("gs_cancel_timer returned GS_OK for a timer that had fired");
    } else if (t->cancel2_rc == NOT_RUN) {
        int rc = gs_cancel_timer(g_rt, t->h);
        t->cancel2_rc = rc;
        COUNT(dv, O_CANCEL2, rc);
        if (rc != GS_ENOENT)
            fail("a second gs_cancel_timer returned %d (%s), expected GS_ENOENT", rc,
                 gs_strerror(rc));
    } else {
        COUNT_SKIP(dv, O_CANCEL2);
    }
}

static void op_monitor(driver *dv, int slot, uint64_t b)
{
    gs_pid pid;
    bool own_alive;
    uint32_t gid = peek_slot(dv, slot, &pid, &own_alive);
    uint32_t idx;
    mon_rec *m = ctab_add(g_mons[dv->id], &idx);
    m->inc = gid;
    m->watcher = (int)(b % NWATCH);
    m->demon_rc = m->demon2_rc = NOT_RUN;
    if (pid == GS_NOPID) {
        m->mon_rc = NOT_RUN;
        COUNT_SKIP(dv, O_MONITOR);
        return;
    }
    int rc;
    if ((b >> 8) & 1) {
        wmon_rep rep;
        memset(&rep, 0, sizeof rep);
        size_t len = 0;
        rc = gs_call(g_rt, g_watcher[m->watcher], W_MONITOR, &pid, sizeof pid, &rep, sizeof rep,
                     &len, GS_INFINITY);
        if (rc != GS_OK || len != sizeof rep)
            fail("call to watcher returned %d (%s), len %zu", rc, gs_strerror(rc), len);
        rc = rep.rc;
        m->ref = rep.ref;
    } else {
        rc = gs_monitor(g_rt, g_watcher[m->watcher], pid, &m->ref);
    }
    m->mon_rc = rc;
    COUNT(dv, O_MONITOR, rc);
    if (rc != GS_OK)
        fail("gs_monitor(watcher, slot %d) returned %d (%s)", slot, rc, gs_strerror(rc));
    if (m->ref == 0)
        fail("gs_monitor returned GS_OK and ref 0");
}

static void op_demonitor(driver *dv, uint64_t b)
{
    ctab *mt = g_mons[dv->id];
    if (mt->n == 0) {
        COUNT_SKIP(dv, O_DEMONITOR);
        return;
    }
    uint32_t back = (uint32_t)(b % (mt->n < RECENT ? mt->n : RECENT));
    mon_rec *m = ctab_at(mt, mt->n - 1 - back);
    if (m->mon_rc != GS_OK) {
        COUNT_SKIP(dv, O_DEMONITOR);
    } else if (m->demon_rc == NOT_RUN) {
        int rc = gs_demonitor(g_rt, m->ref);
        m->demon_rc = rc;
        COUNT(dv, O_DEMONITOR, rc);
        if (rc != GS_OK && rc != GS_ENOENT)
            fail("gs_demonitor returned %d (%s)", rc, gs_strerror(rc));
    } else if (m->demon2_rc == NOT_RUN) {
        int rc = gs_demonitor(g_rt, m->ref);
        m->demon2_rc = rc;
        COUNT(dv, O_DEMONITOR2, rc);
        if (rc != GS_ENOENT)
            fail("a second gs_demonitor returned %d (%s), expected GS_ENOENT", rc,
                 gs_strerror(rc));
    } else {
        COUNT_SKIP(dv, O_DEMONITOR2);
    }
}

/* Lifecycle operations, on one of the driver's own slots (j-th). */
static void op_lifecycle(driver *dv, int what, int j, uint64_t b)
{
    int slot = dv->id + j * g_ndrivers;
    uint32_t live = dv->own_gid[j];
    if (what == O_START) {
        if (live != NO_GID) {
            op_cast(dv, slot, b);
            return;
        }
        uint32_t idx;
        inc_rec *r = ctab_add(g_incs[dv->id], &idx);
        uint32_t gid = GID(dv->id, idx);
        int m = (int)(b % 100);
        r->slot = slot;
        r->mode = m < 4 ? M_REFUSE_STOP : m < 8 ? M_REFUSE_ERR : M_NORMAL;
        gs_pid pid = GS_NOPID;
        int rc = gs_start(g_rt, &soak_ops, &gid, &pid);
        COUNT(dv, O_START, rc);
        int want = r->mode == M_REFUSE_STOP ? GS_ECANCELED
                   : r->mode == M_REFUSE_ERR ? REFUSE_CODE
                                             : GS_OK;
        if (rc != want)
            fail("gs_start (init mode %d) returned %d (%s), expected %d", r->mode, rc,
                 gs_strerror(rc), want);
        if (rc != GS_OK) {
            r->end_kind = E_REFUSED;
            return;
        }
        if (pid == GS_NOPID)
            fail("gs_start returned GS_OK and GS_NOPID");
        r->pid = pid;
        r->end_kind = E_ALIVE;
        dv->own_gid[j] = gid;
        atomic_store_explicit(&g_slot_inc[slot], gid, memory_order_release);
        return;
    }
    if (live == NO_GID) {
        COUNT_SKIP(dv, what);
        return;
    }
    inc_rec *r = inc_get(live);
    int rc;
    switch (what) {
    case O_STOP: {
        static const int reasons[3] = {GS_NORMAL, GS_SHUTDOWN, USER_REASON};
        int reason = reasons[b % 3];
        int timeout = (b >> 8) & 1 ? GS_INFINITY : STOP_TIMEOUT_MS;
        long snap = atomic_load(&r->accepted[dv->id]);
        rc = gs_stop(g_rt, r->pid, reason, timeout);
        COUNT(dv, O_STOP, rc);
        if (rc != GS_OK)
            fail("gs_stop of an own live server returned %d (%s)", rc, gs_strerror(rc));
        end_own(dv, j, E_STOP, reason);
        r->owner_snapshot = snap;
        if (((b >> 9) & 3) == 0) {
            rc = gs_stop(g_rt, r->pid, GS_NORMAL, 1000);
            COUNT(dv, O_STOP2, rc);
            if (rc != GS_ENOPROC)
                fail("gs_stop of a stopped server returned %d (%s)", rc, gs_strerror(rc));
        }
        break;
    }
    case O_CRASH:
    case O_STOPRET:
        rc = gs_cast(g_rt, r->pid, what == O_CRASH ? C_CRASH : C_STOPRET, NULL, 0);
        COUNT(dv, what, rc);
        if (rc != GS_OK)
            fail("crash/stop cast to an own live server returned %d (%s)", rc, gs_strerror(rc));
        end_own(dv, j, what == O_CRASH ? E_CRASH : E_STOPRET,
                what == O_CRASH ? CRASH_CODE : GS_NORMAL);
        break;
    case O_KILL:
        rc = gs_kill(g_rt, r->pid);
        COUNT(dv, O_KILL, rc);
        if (rc != GS_OK)
            fail("gs_kill of an own live server returned %d (%s)", rc, gs_strerror(rc));
        end_own(dv, j, E_KILL, GS_KILLED);
        break;
    default:
        fail("bad lifecycle op");
    }
}

static void *driver_main(void *arg)
{
    driver *dv = arg;
    while (!atomic_load_explicit(&g_stop_drivers, memory_order_relaxed)) {
        /* Always four draws per operation, whatever happens. */
        uint64_t a = rnd(&dv->rng), b = rnd(&dv->rng), c = rnd(&dv->rng), e = rnd(&dv->rng);
        int op = (int)(a % 1000);
        int any = (int)((a >> 16) % (uint64_t)g_nslots);
        int j = (int)((e >> 8) % (uint64_t)dv->nown);
        if (op < 100)
            op_lifecycle(dv, O_START, j, b);
        else if (op < 120)
            op_lifecycle(dv, O_STOP, j, b);
        else if (op < 132)
            op_lifecycle(dv, O_CRASH, j, b);
        else if (op < 140)
            op_lifecycle(dv, O_STOPRET, j, b);
        else if (op < 160)
            op_lifecycle(dv, O_KILL, j, b);
        else if (op < 450)
            op_cast(dv, any, b);
        else if (op < 700)
            op_call(dv, any, b, c);
        else if (op < 800)
            op_send_after(dv, any, b);
        else if (op < 860)
            op_cancel(dv, b);
        else if (op < 940)
            op_monitor(dv, any, b);
        else
            op_demonitor(dv, b);
        dv->ops++;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* End checks                                                          */
/* ------------------------------------------------------------------ */

static int cmp_down(const void *x, const void *y)
{
    const down_rec *p = x, *q = y;
    return p->ref < q->ref ? -1 : p->ref > q->ref;
}

static bool ended_before_quiet(const inc_rec *r) { return r->end_kind >= E_STOP; }

/* Waits (up to the deadline) until what is due before shutdown has
 * happened: crashes and stop-returns terminated, timers of live servers
 * fired, DOWNs of ended servers delivered. */
static void quiet_phase(double deadline)
{
    long want_downs = 0;
    size_t ntw = 0, capw = 1024;
    timer_rec **tw = malloc(capw * sizeof *tw);
    size_t nci = 0, capi = 1024;
    inc_rec **ci = malloc(capi * sizeof *ci);
    if (!tw || !ci)
        fail("out of memory");
    for (int d = 0; d < g_ndrivers; d++) {
        for (uint32_t i = 0; i < g_incs[d]->n; i++) {
            inc_rec *r = ctab_at(g_incs[d], i);
            if (r->end_kind == E_CRASH || r->end_kind == E_STOPRET) {
                if (nci == capi) {
                    capi *= 2;
                    ci = realloc(ci, capi * sizeof *ci);
                    if (!ci)
                        fail("out of memory");
                }
                ci[nci++] = r;
            }
        }
        for (uint32_t i = 0; i < g_timers[d]->n; i++) {
            timer_rec *t = ctab_at(g_timers[d], i);
            if (t->send_rc != GS_OK || t->cancel_rc == GS_OK)
                continue;
            if (inc_get(t->inc)->end_kind != E_ALIVE)
                continue;
            if (ntw == capw) {
                capw *= 2;
                tw = realloc(tw, capw * sizeof *tw);
                if (!tw)
                    fail("out of memory");
            }
            tw[ntw++] = t;
        }
        for (uint32_t i = 0; i < g_mons[d]->n; i++) {
            mon_rec *m = ctab_at(g_mons[d], i);
            if (m->mon_rc != GS_OK || m->demon_rc == GS_OK)
                continue;
            if (ended_before_quiet(inc_get(m->inc)))
                want_downs++;
        }
    }
    for (;;) {
        size_t pend_t = 0, pend_i = 0;
        for (size_t i = 0; i < ntw; i++)
            pend_t += atomic_load(&tw[i]->fired) == 0;
        for (size_t i = 0; i < nci; i++)
            pend_i += atomic_load(&ci[i]->term_runs) == 0;
        long downs = atomic_load(&g_total_downs);
        if (pend_t == 0 && pend_i == 0 && downs >= want_downs)
            break;
        if (now_s() > deadline)
            fail("quiet phase: after the drivers stopped, %zu timers of live servers never fired, "
                 "%zu crashed/stopping servers never terminated, %ld of %ld DOWNs due arrived",
                 pend_t, pend_i, downs, want_downs);
        sleep_ms(20);
    }
    free(tw);
    free(ci);
}

static void final_checks(long *n_inc, long *n_timers, long *n_mons, long *n_downs)
{
    /* Incarnations. */
    long incs = 0;
    for (int d = 0; d < g_ndrivers; d++) {
        for (uint32_t i = 0; i < g_incs[d]->n; i++) {
            inc_rec *r = ctab_at(g_incs[d], i);
            uint32_t gid = GID(d, i);
            incs++;
            int init_runs = atomic_load(&r->init_runs);
            int tr = atomic_load(&r->term_runs);
            int reason = atomic_load(&r->term_reason);
            if (init_runs != 1)
                fail("incarnation %#x: init ran %d times", gid, init_runs);
            int want_runs = r->end_kind == E_REFUSED || r->end_kind == E_KILL ? 0 : 1;
            int want_reason = r->end_kind == E_ALIVE ? GS_SHUTDOWN : r->end_reason;
            if (tr != want_runs)
                fail("incarnation %#x (ended by kind %d): terminate ran %d times, expected %d",
                     gid, r->end_kind, tr, want_runs);
            if (want_runs && reason != want_reason)
                fail("incarnation %#x (ended by kind %d): terminate reason %d, expected %d", gid,
                     r->end_kind, reason, want_reason);
            for (int s = 0; s < g_ndrivers; s++) {
                long acc = atomic_load(&r->accepted[s]);
                long han = atomic_load(&r->handled[s]);
                if (han > acc)
                    fail("incarnation %#x: %ld casts from driver %d handled, only %ld accepted",
                         gid, han, s, acc);
                if (r->end_kind == E_ALIVE && han != acc)
                    fail("incarnation %#x alive at gs_runtime_stop: %ld casts from driver %d "
                         "accepted, %ld handled",
                         gid, acc, s, han);
                if (s == d && (r->end_kind == E_STOP || r->end_kind == E_CRASH ||
                               r->end_kind == E_STOPRET) &&
                    han != r->owner_snapshot)
                    fail("incarnation %#x (ended by kind %d): the owner's %ld casts accepted "
                         "before it were not all handled (%ld)",
                         gid, r->end_kind, r->owner_snapshot, han);
            }
        }
    }
    *n_inc = incs;

    /* Timers. */
    long timers = 0;
    for (int d = 0; d < g_ndrivers; d++) {
        for (uint32_t i = 0; i < g_timers[d]->n; i++) {
            timer_rec *t = ctab_at(g_timers[d], i);
            timers++;
            int fired = atomic_load(&t->fired);
            if (t->send_rc != GS_OK) {
                if (fired)
                    fail("timer %d/%u: gs_send_after failed (%d) but it fired", d, i, t->send_rc);
                continue;
            }
            const inc_rec *r = inc_get(t->inc);
            if (t->cancel_rc == GS_OK && fired)
                fail("timer %d/%u: cancelled with GS_OK and fired", d, i);
            if (t->cancel_rc == GS_ENOENT && !fired && !ended_before_quiet(r))
                fail("timer %d/%u: cancel said GS_ENOENT, but it never fired and its server "
                     "lived on",
                     d, i);
        }
    }
    *n_timers = timers;

    /* DOWNs. */
    size_t nd = 0;
    for (int w = 0; w < NWATCH; w++)
        nd += g_wdown[w].n;
    down_rec *all = malloc((nd ? nd : 1) * sizeof *all);
    if (!all)
        fail("out of memory");
    nd = 0;
    for (int w = 0; w < NWATCH; w++) {
        if (g_wdown[w].n)
            memcpy(all + nd, g_wdown[w].v, g_wdown[w].n * sizeof *all);
        nd += g_wdown[w].n;
    }
    qsort(all, nd, sizeof *all, cmp_down);
    for (size_t i = 1; i < nd; i++)
        if (all[i].ref == all[i - 1].ref)
            fail("two DOWNs for monitor %" PRIu64, all[i].ref);
    long mons = 0, matched = 0;
    for (int d = 0; d < g_ndrivers; d++) {
        for (uint32_t i = 0; i < g_mons[d]->n; i++) {
            mon_rec *m = ctab_at(g_mons[d], i);
            if (m->mon_rc != GS_OK)
                continue;
            mons++;
            const inc_rec *r = inc_get(m->inc);
            down_rec key = {m->ref, 0, 0, 0};
            down_rec *hit = bsearch(&key, all, nd, sizeof *all, cmp_down);
            int got = hit != NULL;
            matched += got;
            if (m->demon_rc == GS_OK && got)
                fail("monitor %" PRIu64 ": gs_demonitor returned GS_OK but DOWN was delivered",
                     m->ref);
            if (m->demon_rc == GS_ENOENT && !got)
                fail("monitor %" PRIu64 ": gs_demonitor returned GS_ENOENT but no DOWN came",
                     m->ref);
            if (m->demon_rc == NOT_RUN && ended_before_quiet(r) && !got)
                fail("monitor %" PRIu64 " of a server that ended (kind %d): no DOWN", m->ref,
                     r->end_kind);
            if (got) {
                int want = r->end_kind == E_ALIVE ? GS_SHUTDOWN : r->end_reason;
                if (hit->pid != r->pid)
                    fail("DOWN for monitor %" PRIu64 " names the wrong pid", m->ref);
                if (hit->watcher != m->watcher)
                    fail("DOWN for monitor %" PRIu64 " reached watcher %d, not %d", m->ref,
                         hit->watcher, m->watcher);
                if (hit->reason != want && hit->reason != GS_ENOPROC)
                    fail("DOWN for monitor %" PRIu64 ": reason %d, expected %d or GS_ENOPROC",
                         m->ref, hit->reason, want);
            }
        }
    }
    if ((size_t)matched != nd)
        fail("%zu DOWNs delivered, only %ld belong to a monitor", nd, matched);
    free(all);
    *n_mons = mons;
    *n_downs = (long)nd;

    /* Replies. */
    /* A deferred reply (from another thread or from handle_info) is exact: GS_OK from gs_reply iff the caller got it.
     * A reply from the call's own handle_call returns GS_OK even when the
     * caller already gave up (messaging.c: "the usual return gs_reply(...)
     * must not crash a server"), although genserver.h documents GS_ENOENT
     * for a caller that timed out; there only answered <= GS_OK holds. */
    static const char *const path_name[3] = {"from handle_call", "from another thread",
                                             "from handle_info"};
    for (int k = 0; k < 3; k++) {
        long a = 0;
        for (int d = 0; d < g_ndrivers; d++)
            a += g_drv_answered_path[d][k];
        long r = atomic_load(&g_reply_ok_path[k]);
        if (k == P_IMMEDIATE ? a > r : a != r)
            fail("calls answered %s: %ld reached their callers, but gs_reply returned GS_OK %ld "
                 "times",
                 path_name[k], a, r);
    }
    if (atomic_load(&g_nested_rc[0]) > atomic_load(&g_reply_ok_srv))
        fail("nested calls answered: %ld, but gs_reply to servers returned GS_OK only %ld times",
             atomic_load(&g_nested_rc[0]), atomic_load(&g_reply_ok_srv));
    if (atomic_load(&g_have_warning))
        fail("the library logged a warning: %s", g_first_warning);
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: soak [--seconds N] [--seed S] [--servers K] [--workers W] [--drivers D]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bool have_seed = false;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--seconds") && v)
            g_seconds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && v) {
            g_seed = strtoull(argv[++i], NULL, 0);
            have_seed = true;
        } else if (!strcmp(argv[i], "--servers") && v)
            g_nslots = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--workers") && v)
            g_workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--drivers") && v)
            g_ndrivers = atoi(argv[++i]);
        else
            usage();
    }
    if (g_seconds < 0 || g_nslots < 1 || g_workers < 1 || g_ndrivers < 1 || g_ndrivers > MAXD ||
        g_nslots < g_ndrivers)
        usage();
    if (!have_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        g_seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    printf("soak: seed %" PRIu64 " (reproduce the operation sequences with --seed %" PRIu64
           "), %d s, %d servers, %d workers, %d drivers\n",
           g_seed, g_seed, g_seconds, g_nslots, g_workers, g_ndrivers);
    fflush(stdout);

    /* Watchdog: the run, the quiet phase (30 s at most) and the shutdown. */
    g_alarm_len = (size_t)snprintf(g_alarm_msg, sizeof g_alarm_msg,
                                   "soak: FAILED (seed %" PRIu64 "): watchdog: hang\n", g_seed);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)g_seconds * 2 + 240);

    gs_runtime_opts o = {.workers = (unsigned)g_workers};
    int rc = gs_runtime_start(&g_rt, &o);
    if (rc != GS_OK)
        fail("gs_runtime_start returned %d (%s)", rc, gs_strerror(rc));
    gs_set_logger(g_rt, logger, NULL);

    g_slot_inc = malloc((size_t)g_nslots * sizeof *g_slot_inc);
    if (!g_slot_inc)
        fail("out of memory");
    for (int s = 0; s < g_nslots; s++)
        atomic_init(&g_slot_inc[s], NO_GID);
    for (int d = 0; d < g_ndrivers; d++) {
        g_incs[d] = calloc(1, sizeof(ctab));
        g_timers[d] = calloc(1, sizeof(ctab));
        g_mons[d] = calloc(1, sizeof(ctab));
        if (!g_incs[d] || !g_timers[d] || !g_mons[d])
            fail("out of memory");
        g_incs[d]->esz = sizeof(inc_rec);
        g_timers[d]->esz = sizeof(timer_rec);
        g_mons[d]->esz = sizeof(mon_rec);
    }
    for (int w = 0; w < NWATCH; w++) {
        rc = gs_start(g_rt, &watcher_ops, &w, &g_watcher[w]);
        if (rc != GS_OK)
            fail("starting watcher %d: %d (%s)", w, rc, gs_strerror(rc));
    }

    pthread_t rep_th;
    if (pthread_create(&rep_th, NULL, replier, NULL) != 0)
        fail("pthread_create");
    driver dv[MAXD];
    pthread_t th[MAXD];
    double t0 = now_s();
    for (int d = 0; d < g_ndrivers; d++) {
        dv[d].id = d;
        dv[d].rng = seed_for(g_seed, d);
        dv[d].ops = 0;
        dv[d].nown = (g_nslots - d + g_ndrivers - 1) / g_ndrivers;
        dv[d].own_gid = malloc((size_t)dv[d].nown * sizeof(uint32_t));
        if (!dv[d].own_gid)
            fail("out of memory");
        for (int j = 0; j < dv[d].nown; j++)
            dv[d].own_gid[j] = NO_GID;
        if (pthread_create(&th[d], NULL, driver_main, &dv[d]) != 0)
            fail("pthread_create");
    }
    while (now_s() - t0 < g_seconds)
        sleep_ms(50);
    atomic_store(&g_stop_drivers, 1);
    for (int d = 0; d < g_ndrivers; d++)
        pthread_join(th[d], NULL);
    double t_run = now_s() - t0;

    /* The replier answers what is queued, then ends. */
    pthread_mutex_lock(&g_dq_mu);
    g_dq_done = 1;
    pthread_cond_broadcast(&g_dq_cv);
    pthread_mutex_unlock(&g_dq_mu);
    pthread_join(rep_th, NULL);

    quiet_phase(now_s() + 30.0);

    /* The live-server count settles once the last exits are done. */
    long live = 0;
    for (int d = 0; d < g_ndrivers; d++)
        for (int j = 0; j < dv[d].nown; j++)
            live += dv[d].own_gid[j] != NO_GID;
    gs_runtime_stats st;
    double st_deadline = now_s() + 10.0;
    for (;;) {
        memset(&st, 0, sizeof st);
        rc = gs_runtime_stats_get(g_rt, &st);
        if (rc != GS_OK)
            fail("gs_runtime_stats_get returned %d (%s)", rc, gs_strerror(rc));
        if (st.servers == (uint64_t)(live + NWATCH))
            break;
        if (now_s() > st_deadline)
            fail("gs_runtime_stats says %" PRIu64 " live servers, expected %ld", st.servers,
                 live + NWATCH);
        sleep_ms(20);
    }

    rc = gs_runtime_stop(g_rt);
    if (rc != GS_OK)
        fail("gs_runtime_stop returned %d (%s)", rc, gs_strerror(rc));
    g_rt = NULL;

    long n_inc, n_timers, n_mons, n_downs;
    final_checks(&n_inc, &n_timers, &n_mons, &n_downs);

    /* Summary. */
    long total = 0;
    for (int d = 0; d < g_ndrivers; d++)
        total += dv[d].ops;
    printf("soak: %ld operations in %.1f s (%.0f/s) by %d drivers:", total, t_run,
           (double)total / (t_run > 0 ? t_run : 1), g_ndrivers);
    for (int d = 0; d < g_ndrivers; d++)
        printf(" %ld", dv[d].ops);
    printf("\n");
    for (int k = 0; k < O_NKINDS; k++) {
        long row[R_N] = {0};
        long sum = 0;
        for (int d = 0; d < g_ndrivers; d++)
            for (int r = 0; r < R_N; r++) {
                row[r] += g_count[d][k][r];
                sum += g_count[d][k][r];
            }
        printf("  %-18s %9ld:", g_kind_name[k], sum);
        for (int r = 0; r < R_N; r++)
            if (row[r])
                printf(" %s=%ld", g_rc_name[r], row[r]);
        printf("\n");
    }
    printf("  server side: casts handled %ld, calls handled %ld, timer ticks %ld, deferred "
           "replies via handle_info %ld, double replies %ld\n",
           atomic_load(&g_casts_handled), atomic_load(&g_calls_handled), atomic_load(&g_ticks),
           atomic_load(&g_defer_info), atomic_load(&g_double_reply));
    printf("  replies to drivers: ok=%ld enoent=%ld; nested calls:", atomic_load(&g_reply_ok_drv),
           atomic_load(&g_reply_enoent_drv));
    for (int r = 0; r < R_N; r++)
        if (atomic_load(&g_nested_rc[r]))
            printf(" %s=%ld", g_rc_name[r], atomic_load(&g_nested_rc[r]));
    printf("\n  incarnations %ld, timers %ld, monitors %ld, DOWNs %ld, servers alive at "
           "shutdown %ld; log lines: error %ld, warning %ld, info %ld\n",
           n_inc, n_timers, n_mons, n_downs, live, atomic_load(&g_log[GS_LOG_ERROR]),
           atomic_load(&g_log[GS_LOG_WARNING]), atomic_load(&g_log[GS_LOG_INFO]));
    printf("soak: OK (seed %" PRIu64 ")\n", g_seed);

    for (int d = 0; d < g_ndrivers; d++) {
        free(dv[d].own_gid);
        ctab_free(g_incs[d]);
        ctab_free(g_timers[d]);
        ctab_free(g_mons[d]);
        free(g_incs[d]);
        free(g_timers[d]);
        free(g_mons[d]);
    }
    for (int w = 0; w < NWATCH; w++)
        free(g_wdown[w].v);
    free(g_slot_inc);
    return 0;
}
