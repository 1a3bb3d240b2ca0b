/* timers.c - the timer service: send_after, cancel, idle timeouts.
 *
 * Problem: any thread may arm or cancel timers, a million may be pending,
 * each must fire no earlier than its deadline and about a tick late at
 * most, and an idle runtime must sleep.
 *
 * Design: one timer thread owns the wheel (wheel.c, 1 ms ticks), so the
 * wheel needs no lock. Timer records live in a type-stable pool; a handle
 * is generation | runtime tag | index, checked against the record's own
 * generation.
 *   - Arming (any thread) fills a record, sets it PENDING and pushes it on
 *     the service's inbox (injectq: one atomic exchange). If the timer
 *     thread sleeps past the new deadline, it is woken (Dekker between the
 *     push and the `sleeping` flag, as in reply.c).
 *   - The timer thread drains the inbox into the wheel, advances the wheel
 *     to the current tick, and sleeps on a futex until the next occupied
 *     tick: no tick runs when nothing is due.
 *   - Firing and cancelling race on the record's state word: both CAS from
 *     PENDING (to DONE or to CANCELLED), so exactly one wins and both
 *     parties agree on the outcome. A cancelled record is freed lazily by
 *     the timer thread (when drained or when its tick comes).
 *   - The message a timer delivers is allocated when it is armed, so firing
 *     cannot fail for lack of memory.
 *   - A server that had timers asks, when it exits, for a purge: the timer
 *     thread walks the slot's list of timers (kept by the timer thread in
 *     the proc) and frees those aimed at the dead pid. gs_cancel_timer on
 *     such a timer returns GS_ENOENT even before the purge ran, because it
 *     checks that the target is still alive.
 *   - Idle timeouts cost nothing per message: the server records when it
 *     last handled one (once per scheduling turn), and one timer, armed for
 *     last_activity + idle, checks on arrival whether silence really
 *     lasted that long, and re-arms for the remaining time if not.
 * Why a timer thread rather than workers owning the wheel: the wheel then
 * needs no lock and workers never pay for timer bookkeeping on their
 * message path; the thread sleeps whenever nothing is due. Measured in
 * bench/ (W7, W8).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "futex.h"
#include "internal.h"
#include "alloc.h"

#define TIMER_CHUNK_SHIFT 12
#define TIMER_MAX (1u << 24) /* pending timers per runtime */
#define NS_PER_TICK 1000000u

enum { TS_FREE = 0, TS_PENDING = 1, TS_DONE = 2, TS_CANCELLED = 3 };
enum { TK_SEND, TK_PURGE, TK_FN };

typedef struct timer_rec {
    _Atomic uint64_t state; /* generation << 2 | TS_* */
    mbox_node inbox_link;
    wheel_timer wt;
    struct timer_rec *proc_prev, *proc_next; /* the target slot's list */
    /* Atomic because gs_cancel_timer reads it while the record may be
     * recycled under it (the generation check discards such a read). */
    _Atomic gs_pid target;
    msg *m; /* TK_SEND: what to deliver */
    void (*fn)(gs_runtime *, uint64_t, uint64_t); /* TK_FN: what to call, with a, b */
    uint64_t a, b;
    uint64_t deadline; /* tick */
    uint32_t idx;
    _Atomic uint8_t kind; /* atomic: gs_cancel_timer reads it like target */
    bool in_list; /* linked in the target's list (timer thread only) */
    _Atomic uint32_t free_link;
} timer_rec;

typedef struct timer_service {
    injectq inbox;
    pool recs;
    uint64_t base_ns; /* tick 0 */
    pthread_t thread;
    wheel wheel; /* the timer thread only */
    alignas(64) _Atomic uint32_t bell;
    _Atomic uint32_t sleeping;
    _Atomic uint64_t sleep_until; /* tick the sleeping thread wakes at */
    atomic_bool quit;
} timer_service;

static inline uint64_t state_word(uint64_t gen, unsigned st)
{
    return gen << 2 | st;
}

static inline gs_timer handle_make(gs_runtime *rt, uint32_t gen, uint32_t idx)
{
    return (gs_timer)gen << 32 | (gs_timer)rt->tag << PID_INDEX_BITS | idx;
}

static uint64_t tick_of_ns(timer_service *ts, uint64_t ns)
{
    return ns <= ts->base_ns ? 0 : (ns - ts->base_ns) / NS_PER_TICK;
}

/* The first tick at which `ns` has passed: never early. */
static uint64_t tick_ceil_of_ns(timer_service *ts, uint64_t ns)
{
    return ns <= ts->base_ns ? 0 : (ns - ts->base_ns + NS_PER_TICK - 1) / NS_PER_TICK;
}

static timer_rec *rec_from_wheel(wheel_timer *wt)
{
    return (timer_rec *)((char *)wt - offsetof(timer_rec, wt));
}

static timer_rec *rec_from_inbox(mbox_node *n)
{
    return (timer_rec *)((char *)n - offsetof(timer_rec, inbox_link));
}

/* ---- arming (any thread) -------------------------------------------- */

static int rec_new(timer_service *ts, uint8_t kind, timer_rec **out, uint64_t *gen_out)
{
    uint32_t idx;
    int rc = pool_alloc(&ts->recs, &idx);
    if (rc != GS_OK)
        return rc == GS_ELIMIT ? GS_EAGAIN : rc;
    timer_rec *r = pool_at(&ts->recs, idx);
    r->idx = idx;
    atomic_store_explicit(&r->kind, kind, memory_order_relaxed);
    r->m = NULL;
    r->in_list = false;
    /* The generation is bumped at each use; the record is not visible to
     * anybody with the new generation until its handle is returned. */
    uint64_t gen = (atomic_load_explicit(&r->state, memory_order_relaxed) >> 2) + 1;
    gen &= 0xFFFFFFFFu; /* handles carry 32 bits */
    if (gen == 0)
        gen = 1;
    *gen_out = gen;
    *out = r;
    return GS_OK;
}

/* Pushes r to the timer thread, waking it if it sleeps past `deadline`. */
static void submit(timer_service *ts, timer_rec *r, uint64_t deadline)
{
    injectq_push(&ts->inbox, &r->inbox_link); /* seq_cst exchange */
    full_fence();
    /* Dekker with the timer thread: it stores sleep_until and sleeping,
     * then re-checks the inbox. */
    if (atomic_load_explicit(&ts->sleeping, memory_order_seq_cst) &&
        deadline < atomic_load_explicit(&ts->sleep_until, memory_order_seq_cst)) {
        atomic_fetch_add_explicit(&ts->bell, 1, memory_order_release);
        futex_wake(&ts->bell, 1);
    }
}

/* Arms a TK_SEND timer delivering m to p (which the caller keeps alive:
 * a reference, or p is the running server). */
static int arm_send(gs_runtime *rt, proc *p, msg *m, uint64_t deadline_ns, gs_timer *out)
{
    timer_service *ts = rt->timers;
    timer_rec *r;
    uint64_t gen;
    int rc = rec_new(ts, TK_SEND, &r, &gen);
    if (rc != GS_OK)
        return rc;
    atomic_store_explicit(&r->target, p->pid, memory_order_relaxed);
    r->m = m;
    r->deadline = tick_ceil_of_ns(ts, deadline_ns);
    /* release: the record's fields are visible to whoever acquires the
     * state (the timer thread via the inbox, a canceller via its CAS). */
    atomic_store_explicit(&r->state, state_word(gen, TS_PENDING), memory_order_release);
    /* Before the server can exit (the caller holds it alive): its exit sees
     * the flag and asks for a purge after this submission. */
    atomic_store_explicit(&p->has_timers, true, memory_order_relaxed);
    if (out != NULL)
        *out = handle_make(rt, (uint32_t)gen, r->idx);
    submit(ts, r, r->deadline);
    return GS_OK;
}

int gs_send_after(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len, int delay_ms,
                  gs_timer *out)
{
    if (rt == NULL || (data == NULL && len > 0) || tag >= GS_TAG_RUNTIME_BASE || delay_ms < 0 ||
        delay_ms > GS_TIMEOUT_MAX_MS)
        return GS_EINVAL;
    if (len > GS_MSG_MAX)
        return GS_EMSGSIZE;
    uint64_t deadline_ns = now_ns() + (uint64_t)delay_ms * 1000000u;
    msg *m = msg_new(rt, MSG_INFO, tag, data, len);
    if (m == NULL)
        return GS_ENOMEM;
    m->sender = GS_NOPID; /* timers deliver as the runtime */
    proc *p;
    int rc = proc_acquire(rt, to, CTL_OPEN, &p);
    if (rc != GS_OK) {
        free(m);
        return rc;
    }
    rc = arm_send(rt, p, m, deadline_ns, out);
    proc_release(p);
    if (rc != GS_OK)
        free(m);
    return rc;
}

/* Whether pid is a live server right now. */
static bool target_alive(gs_runtime *rt, gs_pid pid)
{
    proc *p = proc_table_at(rt, pid_index(pid));
    if (p == NULL)
        return false;
    uint64_t w = atomic_load_explicit(&p->ctl, memory_order_acquire);
    return (uint32_t)(w >> 32) == pid_gen(pid) && (w & CTL_OPEN) != 0;
}

int gs_cancel_timer(gs_runtime *rt, gs_timer t)
{
    if (rt == NULL)
        return GS_EINVAL;
    if (pid_tag(t) != rt->tag || rt->timers == NULL)
        return GS_ENOENT;

    timer_rec *r = pool_at(&rt->timers->recs, pid_index(t));
    if (r == NULL)
        return GS_ENOENT;
    uint64_t expected = state_word(t >> 32, TS_PENDING);
    /* acquire: the target was stored before PENDING (release). Read it
     * before the CAS: once cancelled, the record may be recycled at once.
     * If the CAS succeeds, the state did not change in between (every use
     * has its own generation), so the target read is this timer's. */
    if (atomic_load_explicit(&r->state, memory_order_acquire) != expected)
        return GS_ENOENT;
    gs_pid target = atomic_load_explicit(&r->target, memory_order_relaxed);
    uint8_t kind = atomic_load_explicit(&r->kind, memory_order_relaxed);
    /* The CAS against the timer thread's PENDING -> DONE has one winner. */
    if (!atomic_compare_exchange_strong_explicit(&r->state, &expected, state_word(t >> 32, TS_CANCELLED),
                                                 memory_order_acq_rel, memory_order_relaxed))
        return GS_ENOENT;
    /* The target's death already made the timer harmless: report it as
     * gone, as promised (its record is freed by the purge). Internal
     * timers (call timeouts) have no target. */
    return kind == TK_FN || target_alive(rt, target) ? GS_OK : GS_ENOENT;
}

int timers_arm_fn(gs_runtime *rt, uint64_t deadline_ns, void (*fn)(gs_runtime *, uint64_t, uint64_t), uint64_t a,
                  uint64_t b, gs_timer *out)
{
    timer_service *ts = rt->timers;
    timer_rec *r;
    uint64_t gen;
    int rc = rec_new(ts, TK_FN, &r, &gen);
    if (rc != GS_OK)
        return rc;
    atomic_store_explicit(&r->target, GS_NOPID, memory_order_relaxed);
    r->fn = fn;
    r->a = a;
    r->b = b;
    r->deadline = tick_ceil_of_ns(ts, deadline_ns);
    atomic_store_explicit(&r->state, state_word(gen, TS_PENDING), memory_order_release);
    if (out != NULL)
        *out = handle_make(rt, (uint32_t)gen, r->idx);
    submit(ts, r, r->deadline);
    return GS_OK;
}

/* ---- idle timeouts (the server's own worker) ------------------------ */

proc_extra *proc_extra_get(proc *p)
{
    if (p->extra == NULL)
        p->extra = gs_calloc(1, sizeof(proc_extra));
    return p->extra;
}

int timers_arm_idle(proc *p, uint64_t deadline_ns, gs_timer *out)
{
    /* The message names the arming (idle_seq): a check that was already
     * queued when the timeout changed is recognised as stale. */
    uint64_t seq = ++p->extra->idle_seq;
    msg *m = msg_new(proc_rt(p), MSG_IDLE, GS_TAG_TIMEOUT, &seq, sizeof seq);
    if (m == NULL)
        return GS_ENOMEM;
    m->sender = GS_NOPID;
    int rc = arm_send(proc_rt(p), p, m, deadline_ns, out);
    if (rc != GS_OK)
        free(m);
    return rc;
}

void gs_set_idle_timeout(gs_ctx *ctx, int ms)
{
    proc *p = (proc *)ctx;
    if (p == NULL || (ms <= 0 && ms != GS_INFINITY))
        return;
    if (ms == GS_INFINITY) {
        if (p->extra == NULL || p->extra->idle_ms == 0)
            return;
        p->extra->idle_ms = 0;
        if (p->extra->idle_timer != 0)
            (void)gs_cancel_timer(proc_rt(p), p->extra->idle_timer);
        p->extra->idle_timer = 0;
        return;
    }
    if (p->extra != NULL && p->extra->idle_ms == ms)
        return; /* the same value again: free */
    proc_extra *x = proc_extra_get(p);
    if (x == NULL) {
        log_write(proc_rt(p), GS_LOG_ERROR, "idle timeout of %d ms not set: out of memory", ms);
        return;
    }
    if (x->idle_timer != 0)
        (void)gs_cancel_timer(proc_rt(p), x->idle_timer);
    x->idle_timer = 0;
    x->idle_ms = ms;
    x->last_activity_ns = now_ns();
    if (timers_arm_idle(p, x->last_activity_ns + (uint64_t)ms * 1000000u, &x->idle_timer) != GS_OK) {
        x->idle_ms = 0;
        log_write(proc_rt(p), GS_LOG_ERROR, "idle timeout of %d ms not set: out of memory", ms);
    }
}

/* ---- purge (a server's exit) ------------------------------------------ */

void timers_purge(gs_runtime *rt, proc *p)
{
    if (!atomic_load_explicit(&p->has_timers, memory_order_relaxed))
        return;
    atomic_store_explicit(&p->has_timers, false, memory_order_relaxed);
    timer_service *ts = rt->timers;
    timer_rec *r;
    uint64_t gen;
    if (rec_new(ts, TK_PURGE, &r, &gen) != GS_OK)
        return; /* its timers are freed when they come due instead */
    atomic_store_explicit(&r->target, p->pid, memory_order_relaxed);
    atomic_store_explicit(&r->state, state_word(gen, TS_PENDING), memory_order_release);
    submit(ts, r, 0); /* 0: wake the thread now, memory is waiting */
}

/* ---- the timer thread ---------------------------------------------- */

static void rec_release(timer_service *ts, timer_rec *r)
{
    /* Keep the generation: stale handles keep failing until reuse bumps it. */
    uint64_t gen = atomic_load_explicit(&r->state, memory_order_relaxed) >> 2;
    atomic_store_explicit(&r->state, state_word(gen, TS_FREE), memory_order_relaxed);
    pool_free(&ts->recs, r->idx);
}

static void list_link(proc *p, timer_rec *r)
{
    r->proc_prev = NULL;
    r->proc_next = p->timers;
    if (p->timers != NULL)
        p->timers->proc_prev = r;
    p->timers = r;
    r->in_list = true;
}

static void list_unlink(gs_runtime *rt, timer_rec *r)
{
    if (!r->in_list)
        return;
    if (r->proc_prev != NULL)
        r->proc_prev->proc_next = r->proc_next;
    else
        proc_table_at(rt, pid_index(r->target))->timers = r->proc_next;
    if (r->proc_next != NULL)
        r->proc_next->proc_prev = r->proc_prev;
    r->in_list = false;
}

static void fire(wheel_timer *wt, void *ctx)
{
    gs_runtime *rt = ctx;
    timer_service *ts = rt->timers;
    timer_rec *r = rec_from_wheel(wt);
    list_unlink(rt, r);
    uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
    uint64_t gen = w >> 2;
    uint64_t expected = state_word(gen, TS_PENDING);
    /* acq_rel: one winner against gs_cancel_timer. */
    if (atomic_compare_exchange_strong_explicit(&r->state, &expected, state_word(gen, TS_DONE),
                                                memory_order_acq_rel, memory_order_acquire)) {
        if (atomic_load_explicit(&r->kind, memory_order_relaxed) == TK_FN)
            r->fn(rt, r->a, r->b);
        else
            (void)msg_send(rt, r->target, r->m); /* frees m if the target is gone */
        r->m = NULL;
    } else {
        free(r->m); /* cancelled */
    }
    r->m = NULL;
    rec_release(ts, r);
}

static void purge(gs_runtime *rt, gs_pid dead)
{
    timer_service *ts = rt->timers;
    proc *p = proc_table_at(rt, pid_index(dead));
    timer_rec *r = p->timers;
    while (r != NULL) {
        timer_rec *next = r->proc_next;
        if (r->target == dead) {
            list_unlink(rt, r);
            wheel_remove(&ts->wheel, &r->wt);
            uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
            uint64_t expected = state_word(w >> 2, TS_PENDING);
            (void)atomic_compare_exchange_strong_explicit(&r->state, &expected, state_word(w >> 2, TS_CANCELLED),
                                                          memory_order_acq_rel, memory_order_relaxed);
            free(r->m);
            r->m = NULL;
            rec_release(ts, r);
        }
        r = next;
    }
}

/* Takes in at most INBOX_BATCH new timers, so that a thread arming
 * timers in a tight loop cannot keep due timers from firing. */
#define INBOX_BATCH 1024

static void drain_inbox(gs_runtime *rt)
{
    timer_service *ts = rt->timers;
    mbox_node *n;
    for (unsigned taken = 0; taken < INBOX_BATCH && (n = injectq_pop(&ts->inbox)) != NULL; taken++) {
        timer_rec *r = rec_from_inbox(n);
        if (atomic_load_explicit(&r->kind, memory_order_relaxed) == TK_PURGE) {
            purge(rt, r->target);
            rec_release(ts, r);
            continue;
        }
        uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
        if ((w & 3) != TS_PENDING) { /* cancelled before it reached us */
            free(r->m);
            r->m = NULL;
            rec_release(ts, r);
            continue;
        }
        if (atomic_load_explicit(&r->kind, memory_order_relaxed) == TK_SEND)
            list_link(proc_table_at(rt, pid_index(r->target)), r);
        wheel_insert(&ts->wheel, &r->wt, r->deadline);
    }
}

static void *timer_main(void *arg)
{
    gs_runtime *rt = arg;
    timer_service *ts = rt->timers;
    (void)injectq_try_lock(&ts->inbox); /* the only consumer, for good */
    while (!atomic_load_explicit(&ts->quit, memory_order_acquire)) {
        drain_inbox(rt);
        wheel_advance(&ts->wheel, tick_of_ns(ts, now_ns()), fire, rt);
        uint64_t next = wheel_next_tick(&ts->wheel);
        if (next <= tick_of_ns(ts, now_ns()) || injectq_maybe_nonempty(&ts->inbox))
            continue;
        uint32_t bell = atomic_load_explicit(&ts->bell, memory_order_acquire);
        atomic_store_explicit(&ts->sleep_until, next, memory_order_seq_cst);
        atomic_store_explicit(&ts->sleeping, 1, memory_order_seq_cst);
        if (!injectq_maybe_nonempty(&ts->inbox) && !atomic_load_explicit(&ts->quit, memory_order_seq_cst)) {
            if (next == UINT64_MAX) {
                futex_wait_until(&ts->bell, bell, NULL);
            } else {
                struct timespec at = ns_to_timespec(ts->base_ns + next * NS_PER_TICK);
                futex_wait_until(&ts->bell, bell, &at);
            }
        }
        atomic_store_explicit(&ts->sleeping, 0, memory_order_relaxed);
    }
    return NULL;
}

int timers_start(gs_runtime *rt)
{
    timer_service *ts = gs_aligned_alloc(64, (sizeof(timer_service) + 63) & ~(size_t)63);
    if (ts == NULL)
        return GS_ENOMEM;
    memset(ts, 0, sizeof *ts);
    int rc = pool_init(&ts->recs, sizeof(timer_rec), offsetof(timer_rec, free_link), TIMER_CHUNK_SHIFT, TIMER_MAX);
    if (rc != GS_OK) {
        free(ts);
        return rc;
    }
    injectq_init(&ts->inbox);
    ts->base_ns = now_ns();
    wheel_init(&ts->wheel, 0);
    atomic_init(&ts->bell, 0);
    atomic_init(&ts->sleeping, 0);
    atomic_init(&ts->sleep_until, UINT64_MAX);
    atomic_init(&ts->quit, false);
    rt->timers = ts;
    if (pthread_create(&ts->thread, NULL, timer_main, rt) != 0) {
        pool_destroy(&ts->recs);
        free(ts);
        rt->timers = NULL;
        return GS_EAGAIN;
    }
    return GS_OK;
}

static void free_remaining(wheel_timer *wt, void *ctx)
{
    timer_rec *r = rec_from_wheel(wt);
    (void)ctx;
    free(r->m);
    r->m = NULL;
}

/* Called once every server is gone: stops the thread and frees what is
 * still pending (timers of servers that no longer exist). */
void timers_stop(gs_runtime *rt)
{
    timer_service *ts = rt->timers;
    if (ts == NULL)
        return;
    atomic_store_explicit(&ts->quit, true, memory_order_seq_cst);
    atomic_fetch_add_explicit(&ts->bell, 1, memory_order_seq_cst);
    futex_wake(&ts->bell, 1);
    pthread_join(ts->thread, NULL);
    mbox_node *n;
    while ((n = injectq_pop(&ts->inbox)) != NULL) {
        timer_rec *r = rec_from_inbox(n);
        free(r->m);
        r->m = NULL;
    }
    wheel_advance(&ts->wheel, UINT64_MAX, free_remaining, NULL);
    pool_destroy(&ts->recs);
    free(ts);
    rt->timers = NULL;
}
