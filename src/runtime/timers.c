/* timers.c - the timer service: send_after, cancel, idle timeouts.
 *
 * Problem: any thread may arm or cancel timers, a million may be pending,
 * arming must cost about as much as a cast, each timer must fire no
 * earlier than its deadline and only a little later, and an idle runtime
 * must sleep.
 *
 * Design: one timer thread owns the wheel (wheel.c, 1 ms ticks) and the
 * tick it is serving, split into sub-tick buckets (timer_thread.c), so
 * neither needs a lock. Timer records live in a type-stable pool (taken
 * through the arming thread's cache: a worker's own, or for any other
 * thread one in thread_cache.c; freed into the timer thread's); a handle
 * is generation | runtime tag | index, checked against the record's own
 * generation. This file is the arming side, any thread:
 *   - Arming fills a record (a payload up to TIMER_INLINE_MAX bytes sits
 *     in it: no allocation; the message is made when the timer fires, and
 *     a failure there retries a tick later), sets it PENDING and pushes it
 *     on the service's inbox (one atomic exchange); a gs_send_after timer
 *     due HOLD_AHEAD_NS or more ahead waits in the arming thread's outbox
 *     first (timer_outbox.c), and never leaves the thread if cancelled
 *     meanwhile. If the timer thread sleeps past the new deadline, it is
 *     woken (Dekker between the push and the `sleeping` flag, as in
 *     reply.c). The target is checked with
 *     one load of its control word, without taking a reference: the timer
 *     thread checks again when it takes the record in (see purge below).
 *   - Firing, cancelling and draining race on the record's state word
 *     (generation | DRAINED | PENDING/DONE/CANCELLED), one CAS each, so
 *     exactly one party owns each outcome. A timer cancelled before the
 *     timer thread took it in is freed by the drain; one cancelled later is
 *     pushed to the inbox again as a removal request, so its memory is
 *     freed at once rather than at its deadline.
 *   - A server that had timers asks, when it exits, for a purge: the timer
 *     thread walks the slot's list of timers (kept by the timer thread in
 *     the proc) and frees those aimed at the dead pid; a timer that reaches
 *     the thread after the purge finds its target dead and is freed then.
 *     gs_cancel_timer on such a timer returns GS_ENOENT even before the
 *     purge ran, because it checks that the target is still alive.
 *   - A timer to a registered name (gs_send_after_name,
 *     gs_send_interval_name) carries its message and a copy of the name,
 *     and belongs to no server: the timer thread looks the name up each
 *     time it fires and drops the message if nobody holds it then
 *     (erlang:send_after/3 with an atom).
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

#include "alloc.h"
#include "deadline_clock.h"
#include "futex.h"
#include "thread_cache.h"
#include "timer_service.h"

static inline gs_timer handle_make(gs_runtime *rt, uint32_t gen, uint32_t idx)
{
    return (gs_timer)gen << 32 | (gs_timer)rt->tag << PID_INDEX_BITS | idx;
}

/* The arming thread's record cache and outbox: a worker's own, else the
 * thread's (thread_cache.c); NULL if it has none. */
static timer_arming *arming_side(gs_runtime *rt)
{
    worker *w = worker_of(rt);
    return w != NULL ? &w->timer_side : thread_timer_side(rt);
}

/* ---- arming (any thread) -------------------------------------------- */

/* A record of `kind` for target and deadline, not yet visible to anyone. */
static int rec_new(gs_runtime *rt, timer_arming *a, uint8_t kind, gs_pid target, uint64_t deadline_ns,
                   timer_rec **out, uint64_t *gen_out)
{
    timer_service *ts = rt->timers;
    uint32_t idx;
    int rc = pool_alloc_cached(&ts->recs, a != NULL ? &a->cache : NULL, &idx);
    if (rc != GS_OK)
        return rc == GS_ELIMIT ? GS_EAGAIN : rc;
    timer_rec *r = pool_at(&ts->recs, idx);
    /* release: whatever ended the record's previous use (its state's
     * last change, which the pool handed to us) is ordered before the
     * stores below, so that a gs_read_timer that reads one of them and
     * then the state word sees that change (fence-to-fence). A compiler
     * barrier on x86. */
    atomic_thread_fence(memory_order_release);
    r->idx = idx;
    atomic_store_explicit(&r->kind, kind, memory_order_relaxed);
    r->in_list = false;
    r->where = AT_NOWHERE;
    atomic_store_explicit(&r->target, target, memory_order_relaxed);
    atomic_store_explicit(&r->deadline_ns, deadline_ns, memory_order_relaxed);
    /* The generation is bumped at each use; the record is not visible to
     * anybody with the new generation until its handle is returned. */
    uint64_t gen = (atomic_load_explicit(&r->state, memory_order_relaxed) >> ST_GEN_SHIFT) + 1;
    gen &= 0xFFFFFFFFu; /* handles carry 32 bits */
    if (gen == 0)
        gen = 1;
    *gen_out = gen;
    *out = r;
    return GS_OK;
}

/* Gives back a record that was never published (its state word still
 * holds the previous generation, so old handles keep failing). */
static void rec_unpublished_free(gs_runtime *rt, timer_arming *a, timer_rec *r)
{
    pool_free_cached(&rt->timers->recs, a != NULL ? &a->cache : NULL, r->idx);
}

/* Wakes the timer thread: the bell first (release: what the caller
 * published before), so that a thread about to sleep on the old value
 * does not. */
static void ring_timer_thread(timer_service *ts)
{
    atomic_fetch_add_explicit(&ts->bell, 1, memory_order_release);
    futex_wake(&ts->bell, 1);
}

void timers_submit_chain(timer_service *ts, mbox_node *first, mbox_node *last, uint32_t n,
                         uint64_t min_deadline_ns)
{
    injectq_push_chain(&ts->inbox, first, last); /* seq_cst exchange */
    /* Dekker with the timer thread, which stores sleep_until_ns and
     * sleeping (seq_cst), then re-checks the inbox: with the exchange
     * above and these loads all seq_cst, one of the two sees the other. */
    store_load_fence();
    if (!atomic_load_explicit(&ts->sleeping, memory_order_seq_cst))
        return;
    if (min_deadline_ns < atomic_load_explicit(&ts->sleep_until_ns, memory_order_seq_cst)) {
        ring_timer_thread(ts);
        return;
    }
    /* relaxed backlog: only a count; the thread zeroes it before it
     * sleeps. Wake it once, when the count crosses BACKLOG_WAKE. */
    uint32_t before = atomic_fetch_add_explicit(&ts->backlog, n, memory_order_relaxed);
    if (before < BACKLOG_WAKE && before + n >= BACKLOG_WAKE) {
        ring_timer_thread(ts);
    }
}

/* Pushes r to the timer thread, waking it if it sleeps past `deadline_ns`. */
static void submit(timer_service *ts, timer_rec *r, uint64_t deadline_ns)
{
    timers_submit_chain(ts, &r->inbox_link, &r->inbox_link, 1, deadline_ns);
}

/* Publishes a filled record under its new generation and gives out its
 * handle (out may be NULL). */
static void rec_make_pending(gs_runtime *rt, timer_rec *r, uint64_t gen, gs_timer *out)
{
    /* release: the record's fields are visible to whoever acquires the
     * state (the timer thread via the inbox, a canceller via its CAS). */
    atomic_store_explicit(&r->state, state_word(gen, TS_PENDING), memory_order_release);
    if (out != NULL)
        *out = handle_make(rt, (uint32_t)gen, r->idx);
}

/* Publishes r and pushes it to the timer thread at once, behind what the
 * arming thread's outbox holds (armed first, it goes first). */
static void rec_publish(gs_runtime *rt, timer_arming *a, timer_rec *r, uint64_t gen, uint64_t wake_ns,
                        gs_timer *out)
{
    rec_make_pending(rt, r, gen, out);
    if (a != NULL && atomic_load_explicit(&a->outbox.top, memory_order_relaxed) != NULL)
        outbox_flush(rt, a);
    submit(rt->timers, r, wake_ns);
}

/* Makes a filled record pending: held in the arming thread's outbox when
 * `hold` (its deadline is at least HOLD_AHEAD_NS away, timer_outbox.c),
 * else pushed to the timer thread at once. */
static void arm_finish(gs_runtime *rt, timer_arming *a, timer_rec *r, uint64_t gen, uint64_t deadline_ns, bool hold,
                       gs_timer *out)
{
    if (hold && a != NULL) {
        rec_make_pending(rt, r, gen, out);
        outbox_hold(rt, a, r);
    } else {
        rec_publish(rt, a, r, gen, deadline_ns, out);
    }
}

/* Arms a TK_SEND timer delivering (msg_kind, tag, data, len) to pid, whose
 * slot mark is `mark` (read as `seen`). `hold`: its deadline is at least
 * HOLD_AHEAD_NS away, so it may wait in the arming thread's outbox
 * (timer_outbox.c). msg_kind MSG_TICK: an interval timer, due again every
 * interval_ns (timer_thread.c, fire_tick). */
static int arm_send(gs_runtime *rt, _Atomic uint64_t *mark, uint64_t seen, gs_pid pid, uint8_t msg_kind,
                    uint32_t tag, const void *data, size_t len, uint64_t deadline_ns, uint64_t interval_ns, bool hold,
                    gs_timer *out)
{
    timer_arming *a = arming_side(rt);
    timer_rec *r;
    uint64_t gen;
    int rc = rec_new(rt, a, TK_SEND, pid, deadline_ns, &r, &gen);
    if (rc != GS_OK)
        return rc;
    atomic_store_explicit(&r->msg_kind, msg_kind, memory_order_relaxed);
    r->tag = tag;
    /* An interval timer keeps its message as a template, copied each tick. */
    r->inline_data = len <= TIMER_INLINE_MAX && msg_kind != MSG_TICK;
    if (r->inline_data) {
        r->len = (uint8_t)len;
        if (len > 0)
            memcpy(r->u.data, data, len);
    } else {
        /* Too big to sit inline: allocated now, so that firing needs no
         * large allocation. */
        msg *m = msg_new(rt, msg_kind, tag, data, len);
        if (m == NULL) {
            rec_unpublished_free(rt, a, r);
            return GS_ENOMEM;
        }
        m->sender = GS_NOPID; /* timers deliver as the runtime */
        r->u.m = m;
        if (msg_kind == MSG_TICK)
            r->u.tick.interval_ns = interval_ns;
    }
    /* Tell the server's exit to ask for a purge, before the push (only the
     * first timer writes the mark). A server that exits before this RMW,
     * or whose purge overtakes this record (in the inbox, or while it
     * waits in an outbox), is found dead when the timer thread takes the
     * record in. */
    if ((seen & MARK_TIMERS) == 0)
        atomic_fetch_or_explicit(mark, MARK_TIMERS, memory_order_seq_cst);
    arm_finish(rt, a, r, gen, deadline_ns, hold, out);
    return GS_OK;
}

/* The argument checks every timer that delivers a message makes. */
static int send_args_check(gs_runtime *rt, uint32_t tag, const void *data, size_t len, int ms, int min_ms)
{
    if (rt == NULL || (data == NULL && len > 0) || tag >= GS_TAG_RUNTIME_BASE || ms < min_ms ||
        ms > GS_TIMEOUT_MAX_MS)
        return GS_EINVAL;
    return len > GS_MSG_MAX ? GS_EMSGSIZE : GS_OK;
}

/* gs_send_after (MSG_INFO, once after ms) and gs_send_interval
 * (MSG_TICK, every ms, ms >= min_ms): the checks, then the arming. */
static int send_timer(gs_runtime *rt, gs_pid to, uint8_t msg_kind, uint32_t tag, const void *data, size_t len,
                      int ms, int min_ms, gs_timer *out)
{
    int rc = send_args_check(rt, tag, data, len, ms, min_ms);
    if (rc != GS_OK)
        return rc;
    _Atomic uint64_t *mark;
    uint64_t seen = target_mark(rt, to, &mark);
    if (!slot_mark_alive(seen, to))
        return GS_ENOPROC;
    uint64_t delay_ns = (uint64_t)ms * 1000000u;
    uint64_t deadline_ns = deadline_clock_ns() + delay_ns;
    return arm_send(rt, mark, seen, to, msg_kind, tag, data, len, deadline_ns, msg_kind == MSG_TICK ? delay_ns : 0,
                    delay_ns >= HOLD_AHEAD_NS, out);
}

int gs_send_after(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len, int delay_ms,
                  gs_timer *out)
{
    return send_timer(rt, to, MSG_INFO, tag, data, len, delay_ms, 0, out);
}

int gs_send_interval(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len, int interval_ms,
                     gs_timer *out)
{
    return send_timer(rt, to, MSG_TICK, tag, data, len, interval_ms, 1, out);
}

/* A TK_NAMED timer (gs_send_after_name: MSG_INFO once; and
 * gs_send_interval_name: MSG_TICK every ms): its message is made now and
 * its name copied, so that firing allocates nothing but a tick's copy;
 * the name is looked up each time it fires (timer_thread.c). It belongs
 * to no server: no slot mark, no purge. */
static int send_timer_named(gs_runtime *rt, const char *name, uint8_t msg_kind, uint32_t tag, const void *data,
                            size_t len, int ms, int min_ms, gs_timer *out)
{
    int rc = send_args_check(rt, tag, data, len, ms, min_ms);
    if (rc != GS_OK)
        return rc;
    if (!registry_name_valid(name))
        return GS_EINVAL;
    size_t name_len = strlen(name);
    char *copy = gs_malloc(name_len + 1);
    msg *m = copy != NULL ? msg_new(rt, msg_kind, tag, data, len) : NULL;
    if (m == NULL) {
        free(copy);
        return GS_ENOMEM;
    }
    memcpy(copy, name, name_len + 1);
    m->sender = GS_NOPID; /* timers deliver as the runtime */
    uint64_t delay_ns = (uint64_t)ms * 1000000u;
    uint64_t deadline_ns = deadline_clock_ns() + delay_ns;
    timer_arming *a = arming_side(rt);
    timer_rec *r;
    uint64_t gen;
    if ((rc = rec_new(rt, a, TK_NAMED, GS_NOPID, deadline_ns, &r, &gen)) != GS_OK) {
        msg_free(m);
        free(copy);
        return rc;
    }
    atomic_store_explicit(&r->msg_kind, msg_kind, memory_order_relaxed);
    r->tag = tag;
    r->inline_data = false;
    r->u.named.m = m;
    r->u.named.interval_ns = msg_kind == MSG_TICK ? delay_ns : 0;
    r->u.named.name = copy;
    arm_finish(rt, a, r, gen, deadline_ns, delay_ns >= HOLD_AHEAD_NS, out);
    return GS_OK;
}

int gs_send_after_name(gs_runtime *rt, const char *name, uint32_t tag, const void *data, size_t len, int delay_ms,
                       gs_timer *out)
{
    return send_timer_named(rt, name, MSG_INFO, tag, data, len, delay_ms, 0, out);
}

int gs_send_interval_name(gs_runtime *rt, const char *name, uint32_t tag, const void *data, size_t len,
                          int interval_ms, gs_timer *out)
{
    return send_timer_named(rt, name, MSG_TICK, tag, data, len, interval_ms, 1, out);
}

/* Whether state word w is timer `gen`'s and pending. */
static bool pending_as(uint64_t w, uint64_t gen)
{
    return w == state_word(gen, TS_PENDING) || w == state_word(gen, TS_PENDING | ST_DRAINED);
}

/* The record a handle names (any generation), or NULL if it cannot name
 * one of rt's. */
static timer_rec *rec_of_handle(gs_runtime *rt, gs_timer t)
{
    if (pid_tag(t) != rt->tag || rt->timers == NULL)
        return NULL;
    return pool_at(&rt->timers->recs, pid_index(t));
}

/* Whether a pending timer still counts: its server lives (internal
 * timers, call timeouts and timers to a name have none). One whose server
 * died is harmless already; its record is freed by the purge. */
static bool timer_target_lives(gs_runtime *rt, uint8_t kind, gs_pid target)
{
    return kind != TK_SEND || slot_mark_alive(target_mark(rt, target, NULL), target);
}

/* Whether a timer of this kind was armed by the user (gs_send_after,
 * gs_send_interval and their _name forms), whose handles the user holds.
 * The runtime's own timers (call and request timeouts, idle timeouts,
 * purges) have handles of the same layout; a made-up value, or a pid
 * passed as a timer, may name one, and must not cancel or read it. */
static bool user_armed(uint8_t kind, uint8_t msg_kind)
{
    return kind == TK_NAMED || (kind == TK_SEND && msg_kind != MSG_IDLE);
}

/* Who cancels: the user (gs_cancel_timer: only timers the user armed),
 * the runtime (any kind), or the runtime without hurry (a call timeout
 * whose call ended otherwise, reply_slot_collect): a record the timer
 * thread holds is then freed when the thread next wakes, which it does by
 * the timer's own deadline at the latest, or after BACKLOG_WAKE such
 * requests, instead of being woken for each. */
enum cancel_by { CANCEL_USER, CANCEL_RUNTIME, CANCEL_RUNTIME_LAZY };

static int cancel_timer(gs_runtime *rt, gs_timer t, enum cancel_by by)
{
    if (rt == NULL)
        return GS_EINVAL;
    timer_rec *r = rec_of_handle(rt, t);
    if (r == NULL)
        return GS_ENOENT;
    uint64_t gen = t >> 32;
    /* acquire: the target, kind and msg_kind were stored before PENDING
     * (release). Read them before the CAS: once cancelled, the record may
     * be recycled at once. If the CAS succeeds, the state did not change
     * in between (every use has its own generation), so what was read is
     * this timer's. */
    uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
    gs_pid target = atomic_load_explicit(&r->target, memory_order_relaxed);
    uint8_t kind = atomic_load_explicit(&r->kind, memory_order_relaxed);
    uint8_t msg_kind = atomic_load_explicit(&r->msg_kind, memory_order_relaxed);
    uint64_t deadline = atomic_load_explicit(&r->deadline_ns, memory_order_relaxed);
    for (;;) {
        if (!pending_as(w, gen))
            return GS_ENOENT; /* fired, cancelled, or another timer's record now */
        if (by == CANCEL_USER && !user_armed(kind, msg_kind))
            return GS_ENOENT; /* the runtime's own: no user handle names it */
        /* acq_rel against the timer thread's CAS (PENDING -> DRAINED,
         * PENDING -> DONE): one winner. On failure w is reloaded: the
         * only change that keeps the timer cancellable is DRAINED. */
        if (atomic_compare_exchange_weak_explicit(&r->state, &w, (w & ~(uint64_t)3) | TS_CANCELLED,
                                                  memory_order_acq_rel, memory_order_acquire))
            break;
    }
    /* Taken in already: ask the timer thread to unlink and free it now
     * (the record stays ours to push: the thread frees a DRAINED and
     * CANCELLED record only when this request arrives). A sleeping thread
     * is woken: a far timer would otherwise hold its memory until the
     * thread next wakes, perhaps for hours. Unless the runtime is in no
     * hurry: the thread then wakes by the timer's deadline anyway. */
    if (w & ST_DRAINED)
        submit(rt->timers, r, by == CANCEL_RUNTIME_LAZY ? deadline : 0);
    /* A dead target's timer is reported gone, as promised. */
    return timer_target_lives(rt, kind, target) ? GS_OK : GS_ENOENT;
}

int gs_cancel_timer(gs_runtime *rt, gs_timer t)
{
    return cancel_timer(rt, t, CANCEL_USER);
}

int timers_cancel(gs_runtime *rt, gs_timer t)
{
    return cancel_timer(rt, t, CANCEL_RUNTIME);
}

int timers_cancel_lazy(gs_runtime *rt, gs_timer t)
{
    return cancel_timer(rt, t, CANCEL_RUNTIME_LAZY);
}

int gs_read_timer(gs_runtime *rt, gs_timer t, int *ms_left)
{
    if (rt == NULL || ms_left == NULL)
        return GS_EINVAL;
    timer_rec *r = rec_of_handle(rt, t);
    if (r == NULL)
        return GS_ENOENT;
    uint64_t gen = t >> 32;
    /* A seqlock read on the record, which may be recycled under us: the
     * state (acquire: the deadline and target were stored before PENDING
     * was published), the fields, then the state again after an acquire
     * fence. If a field read came from the record's next use, the fence
     * pairs with rec_new's release fence and the second read sees the
     * state that ended this timer; so an unchanged pending state means
     * the fields were this timer's. */
    uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
    if (!pending_as(w, gen))
        return GS_ENOENT; /* fired, cancelled, or another timer's record now */
    uint64_t deadline = atomic_load_explicit(&r->deadline_ns, memory_order_relaxed);
    gs_pid target = atomic_load_explicit(&r->target, memory_order_relaxed);
    uint8_t kind = atomic_load_explicit(&r->kind, memory_order_relaxed);
    uint8_t msg_kind = atomic_load_explicit(&r->msg_kind, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (!pending_as(atomic_load_explicit(&r->state, memory_order_relaxed), gen))
        return GS_ENOENT;
    if (!user_armed(kind, msg_kind))
        return GS_ENOENT; /* the runtime's own (see user_armed) */
    if (!timer_target_lives(rt, kind, target))
        return GS_ENOENT;
    /* CLOCK_MONOTONIC, by which the timer fires, not the deadline clock,
     * which may run a few microseconds ahead: then a remainder just over
     * k ms read as k ms, sooner than the timer fires. */
    uint64_t now = now_ns();
    uint64_t left_ns = deadline > now ? deadline - now : 0;
    *ms_left = (int)((left_ns + 999999u) / 1000000u); /* rounded up: never says sooner than it will fire */
    return GS_OK;
}

gs_timer timers_handle(gs_runtime *rt, ticket t)
{
    return handle_make(rt, (uint32_t)t.seq, t.slot);
}

bool timers_tick_current(gs_runtime *rt, const msg *m)
{
    /* The tick names its timer by record index and generation (fire_tick).
     * relaxed: a lone check, no field of the record is read after it. A
     * cancel on the server's own thread is ordered before it by program
     * order, so a server that cancels its interval timer never handles a
     * tick of it afterwards; one from another thread races with the tick
     * as it would with the firing. */
    timer_rec *r = pool_at(&rt->timers->recs, m->ticket.slot);
    return pending_as(atomic_load_explicit(&r->state, memory_order_relaxed), m->ticket.seq);
}

int timers_arm_fn(gs_runtime *rt, uint64_t deadline_ns, void (*fn)(gs_runtime *, uint64_t, uint64_t), uint64_t a,
                  uint64_t b, gs_timer *out)
{
    timer_rec *r;
    uint64_t gen;
    timer_arming *side = arming_side(rt);
    int rc = rec_new(rt, side, TK_FN, GS_NOPID, deadline_ns, &r, &gen);
    if (rc != GS_OK)
        return rc;
    r->u.call.fn = fn;
    r->u.call.a = a;
    r->u.call.b = b;
    rec_publish(rt, side, r, gen, deadline_ns, out);
    return GS_OK;
}

void timers_notice_deferral(gs_runtime *rt)
{
    timer_service *ts = rt->timers;
    if (ts == NULL)
        return;
    /* seq_cst: after the caller's fence (see scheduler_defer_timeout). A
     * thread that naps (DEFER_CHECK_NS at most, because lists held
     * entries when it went to sleep) will look anyway. */
    if (atomic_load_explicit(&ts->sleeping, memory_order_seq_cst) &&
        atomic_load_explicit(&ts->sleep_until_ns, memory_order_seq_cst) > now_ns() + 2 * DEFER_CHECK_NS) {
        ring_timer_thread(ts);
    }
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
    gs_runtime *rt = proc_rt(p);
    _Atomic uint64_t *mark;
    uint64_t seen = target_mark(rt, p->pid, &mark);
    return arm_send(rt, mark, seen, p->pid, MSG_IDLE, GS_TAG_TIMEOUT, &seq, sizeof seq, deadline_ns, 0, false, out);
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
            (void)timers_cancel(proc_rt(p), p->extra->idle_timer);
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
        (void)timers_cancel(proc_rt(p), x->idle_timer);
    x->idle_timer = 0;
    x->idle_ms = ms;
    /* Armed from now; the end of this callback (or of init, gs_start)
     * counts as activity, and a check that comes early moves itself. */
    x->last_activity_ns = now_ns();
    idle_arm(p, x->last_activity_ns + (uint64_t)ms * 1000000u);
}

/* ---- purge (a server's exit) ------------------------------------------ */

/* No record to ask for dead's purge with (GS_TIMERS_MAX taken): its pid
 * goes on the owed stack instead (timer_thread.c, purge_owed_pids). Only
 * if memory runs out too are its timers left to their deadlines. */
static void purge_owed(gs_runtime *rt, gs_pid dead)
{
    timer_service *ts = rt->timers;
    owed_purge *n = gs_malloc(sizeof *n);
    if (n == NULL) {
        log_write(rt, GS_LOG_WARNING, "timers of an exited server are freed at their deadlines: out of memory");
        return;
    }
    n->dead = dead;
    n->next = atomic_load_explicit(&ts->owed, memory_order_relaxed);
    /* seq_cst push (release for the node and the slot's close), then the
     * bell: a thread about to sleep read the bell before it looks. */
    while (!atomic_compare_exchange_weak_explicit(&ts->owed, &n->next, n, memory_order_seq_cst,
                                                  memory_order_relaxed))
        ;
    ring_timer_thread(ts);
}

void timers_purge(gs_runtime *rt, proc *p)
{
    /* After the slot closed: an arming thread that set the flag later
     * pushes its record later too, and the timer thread then finds the
     * target dead when it takes the record in. */
    full_fence();
    if ((atomic_load_explicit(slot_mark(rt, pid_index(p->pid)), memory_order_seq_cst) & MARK_TIMERS) == 0)
        return; /* (the next open writes a fresh mark) */
    timer_rec *r;
    uint64_t gen;
    if (rec_new(rt, arming_side(rt), TK_PURGE, p->pid, 0, &r, &gen) != GS_OK) {
        purge_owed(rt, p->pid);
        return;
    }
    /* Not behind the outbox (NULL): timers it holds for the dead server
     * are found dead when taken in. 0: wake the thread now, memory is
     * waiting. */
    rec_publish(rt, NULL, r, gen, 0, NULL);
}

/* ---- the service's life ------------------------------------------------ */

int timers_start(gs_runtime *rt)
{
    timer_service *ts = gs_aligned_alloc(64, (sizeof(timer_service) + 63) & ~(size_t)63);
    if (ts == NULL)
        return GS_ENOMEM;
    memset(ts, 0, sizeof *ts);
    int rc = pool_init(&ts->recs, TIMER_REC_SIZE, offsetof(timer_rec, free_link), TIMER_CHUNK_SHIFT, TIMER_MAX);
    if (rc != GS_OK) {
        free(ts);
        return rc;
    }
    injectq_init(&ts->inbox);
    ts->base_ns = now_ns();
    if ((rc = timer_thread_state_init(ts)) != GS_OK) {
        pool_destroy(&ts->recs);
        free(ts);
        return rc;
    }
    atomic_init(&ts->bell, 0);
    atomic_init(&ts->sleeping, 0);
    atomic_init(&ts->sleep_until_ns, UINT64_MAX);
    atomic_init(&ts->held_hint_ns, UINT64_MAX);
    atomic_init(&ts->backlog, 0);
    atomic_init(&ts->quit, false);
    atomic_init(&ts->owed, NULL);
    rt->timers = ts;
    if (pthread_create(&ts->thread, NULL, timer_main, rt) != 0) {
        timer_thread_state_destroy(ts);
        pool_destroy(&ts->recs);
        free(ts);
        rt->timers = NULL;
        return GS_EAGAIN;
    }
    return GS_OK;
}

uint32_t timers_records_made(gs_runtime *rt)
{
    return rt->timers != NULL ? pool_high_water(&rt->timers->recs) : 0;
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
    timer_service_free_all(rt);
    timer_thread_state_destroy(ts);
    pool_destroy(&ts->recs);
    free(ts);
    rt->timers = NULL;
}
