/* reply.c - reply slots: how a call's answer (or its failure) reaches the
 * thread that waits for it.
 *
 * Problem: the caller may give up (timeout) at the same moment the server
 * answers, the answer may come from any thread at any later time (deferred
 * replies), and a late answer must never land in a later call nor in freed
 * memory.
 *
 * Design: a waiter takes a slot from a type-stable pool (pool.c) and bumps the slot's 62-bit sequence number; the pair
 * (slot, seq) is the call's ticket, carried by the request and handed to
 * handle_call as gs_from. The slot's state word is seq << 2 | phase:
 *     IDLE -> WAITING            the waiter, when it publishes the ticket
 *     WAITING -> WRITING -> DONE a completer: the CAS from WAITING(seq)
 *                                picks exactly one winner among replies,
 *                                failures and the waiter's own timeout
 *     WAITING -> IDLE            the waiter giving up (timeout)
 * The winning completer copies the reply straight into the caller's buffer
 * (safe: the waiter cannot leave while the state is WRITING, it waits for
 * DONE), so a reply is copied once. A completer holding an old ticket
 * fails its CAS (the seq moved on) and drops its reply: GS_ENOENT.
 * Waiting: spin for a few microseconds (a hot server answers in well under
 * that), then sleep on the `bell` futex with the absolute deadline. Only a
 * few waiters may spin at once (half the CPUs, at least one): a thousand
 * callers spinning on two cores would starve the workers that are to
 * answer them (measured: W8 timeouts up to 60 ms late). A completer that
 * finds the caller's deadline already passed completes with GS_ETIMEDOUT
 * and drops the reply, so a caller that was not scheduled in time never
 * returns a reply that came after its timeout. The
 * waiter announces sleeping in `sleeping` and re-checks the state (Dekker
 * with the completer's DONE store and `sleeping` load, both seq_cst), so a
 * completion is never missed and a completer makes a system call only if
 * somebody sleeps.
 */
#include <string.h>

#include <unistd.h>

#include "futex.h"
#include "internal.h"

enum { RS_IDLE = 0, RS_WAITING = 1, RS_WRITING = 2, RS_DONE = 3 };

#define REPLY_SPIN_NS 20000u /* spin this long before sleeping */

/* At most this many waiters spin at once (see the top of the file). */
static unsigned max_spinners(void)
{
    static _Atomic unsigned cached;
    unsigned n = atomic_load_explicit(&cached, memory_order_relaxed);
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 2 ? (unsigned)(cpus / 2) : 1;
        atomic_store_explicit(&cached, n, memory_order_relaxed);
    }
    return n;
}

static inline uint64_t rs_word(uint64_t seq, unsigned phase)
{
    return seq << 2 | phase;
}

_Static_assert(sizeof(reply_slot) % 64 == 0, "reply slots are whole cache lines");

int reply_table_init(gs_runtime *rt)
{
    return pool_init(&rt->replies, sizeof(reply_slot), offsetof(reply_slot, free_link), REPLY_CHUNK_SHIFT,
                     REPLY_SLOTS_MAX);
}

static reply_slot *slot_at(gs_runtime *rt, uint32_t idx)
{
    return pool_at(&rt->replies, idx);
}

/* After every thread of the runtime is gone: a request nobody collected
 * (an outside thread's never waited for, answered or not; a server's
 * whose timeout the stop dropped unfired) still holds its record in its
 * slot. A slot not IDLE is in use; an IDLE one's async is stale. */
void reply_table_destroy(gs_runtime *rt)
{
    uint32_t made = pool_high_water(&rt->replies);
    for (uint32_t idx = 0; idx < made; idx++) {
        reply_slot *s = slot_at(rt, idx);
        if ((atomic_load_explicit(&s->state, memory_order_relaxed) & 3) != RS_IDLE && s->async != NULL)
            request_discard(s->async);
    }
    pool_destroy(&rt->replies);
}

int reply_slot_take(gs_runtime *rt, void *buf, size_t cap, uint64_t deadline_ns, proc *waiter, proc *caller,
                    struct async_req *async, bool thread_request, ticket *out)
{
    uint32_t idx;
    worker *w = worker_of(rt);
    int rc = pool_alloc_cached(&rt->replies, w != NULL ? &w->reply_cache : NULL, &idx);
    if (rc != GS_OK)
        return rc;
    reply_slot *s = slot_at(rt, idx);
    s->seq++;
    s->buf = buf;
    s->cap = cap;
    s->deadline_ns = deadline_ns;
    s->async = async;
    /* release fence: the slot's previous use ended (its last state store,
     * which the pool handed on to us) before the waiter and flag below
     * change, so that a reader that reads the state, one of them, then the
     * state again after an acquire fence (gs_wait_request,
     * reply_slot_interrupt) sees the state move on if it read this use's
     * value for an earlier use's ticket (futex.h, seqlocks). A compiler
     * barrier on x86. */
    SEQ_FENCE(memory_order_release);
    atomic_store_explicit(&s->waiter, waiter, SEQ_FIELD_STORE);
    atomic_store_explicit(&s->caller, caller, SEQ_FIELD_STORE);
    atomic_store_explicit(&s->thread_request, thread_request, SEQ_FIELD_STORE);
    atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed);
    /* release: buf and cap are visible to the completer that wins the CAS
     * from WAITING with an acquire. */
    atomic_store_explicit(&s->state, rs_word(s->seq, RS_WAITING), memory_order_release);
    *out = (ticket){idx, s->seq};
    return GS_OK;
}

static void slot_release(gs_runtime *rt, reply_slot *s, uint32_t idx);

reply_slot *reply_slot_of(gs_runtime *rt, uint32_t idx)
{
    return slot_at(rt, idx);
}

void reply_slot_release(gs_runtime *rt, reply_slot *s, uint32_t idx)
{
    slot_release(rt, s, idx);
}

static void slot_release(gs_runtime *rt, reply_slot *s, uint32_t idx)
{
    atomic_store_explicit(&s->state, rs_word(s->seq, RS_IDLE), memory_order_relaxed);
    worker *w = worker_of(rt);
    pool_free_cached(&rt->replies, w != NULL ? &w->reply_cache : NULL, idx);
}

void reply_slot_abandon(gs_runtime *rt, ticket t)
{
    slot_release(rt, slot_at(rt, t.slot), t.slot);
}

/* Sleeps until the state leaves `seen` or the deadline passes. */
void reply_slot_sleep(reply_slot *s, uint64_t seen, uint64_t deadline_ns)
{
    uint32_t bell = atomic_load_explicit(&s->bell, memory_order_acquire);
    /* seq_cst store then seq_cst load: Dekker with the completer's DONE
     * store and its load of `sleeping`. Either it sees us sleeping and
     * rings, or we see its DONE and do not sleep. */
    atomic_store_explicit(&s->sleeping, 1, memory_order_seq_cst);
    store_load_fence();
    if (atomic_load_explicit(&s->state, memory_order_seq_cst) != seen)
        return;
    if (deadline_ns == DEADLINE_NEVER) {
        futex_wait_until(&s->bell, bell, NULL);
    } else {
        struct timespec ts = ns_to_timespec(deadline_ns);
        futex_wait_until(&s->bell, bell, &ts);
    }
}

int reply_slot_wait(gs_runtime *rt, ticket t, uint64_t deadline_ns, size_t *len_out)
{
    reply_slot *s = slot_at(rt, t.slot);
    const uint64_t waiting = rs_word(t.seq, RS_WAITING);
    const uint64_t writing = rs_word(t.seq, RS_WRITING);
    const uint64_t done = rs_word(t.seq, RS_DONE);
    /* acquire on every load of DONE: pairs with the completer's store, so
     * the reply bytes, len and status are visible. */
    if (atomic_fetch_add_explicit(&rt->spinning_waiters, 1, memory_order_relaxed) < max_spinners()) {
        uint64_t spin_until = now_ns() + REPLY_SPIN_NS;
        if (spin_until > deadline_ns)
            spin_until = deadline_ns;
        for (unsigned i = 1;; i++) {
            if (atomic_load_explicit(&s->state, memory_order_acquire) == done) {
                atomic_fetch_sub_explicit(&rt->spinning_waiters, 1, memory_order_relaxed);
                goto finished;
            }
            if ((i & 63) == 0 && now_ns() >= spin_until)
                break;
            cpu_relax();
        }
    }
    atomic_fetch_sub_explicit(&rt->spinning_waiters, 1, memory_order_relaxed);
    for (;;) {
        uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == done)
            goto finished;
        if (st == waiting && now_ns() >= deadline_ns) {
            uint64_t expected = waiting;
            /* acquire (both ways): if a completer got in first we read
             * its result after its DONE anyway; nothing to publish here. */
            if (atomic_compare_exchange_strong_explicit(&s->state, &expected, rs_word(t.seq, RS_IDLE),
                                                        memory_order_acquire, memory_order_acquire)) {
                slot_release(rt, s, t.slot);
                return GS_ETIMEDOUT;
            }
            continue; /* a completer won: it is writing, DONE follows */
        }
        /* WRITING: the completer is copying; its DONE comes with a ring if
         * we sleep, so wait without a deadline. */
        reply_slot_sleep(s, st, st == writing ? DEADLINE_NEVER : deadline_ns);
    }
finished:
    return reply_slot_collect(rt, t, len_out);
}

int reply_slot_collect(gs_runtime *rt, ticket t, size_t *len_out)
{
    reply_slot *s = slot_at(rt, t.slot);
    int status = s->status;
    if (len_out != NULL)
        *len_out = s->len;
    /* A wheel timer noted here was armed for this call or, when a note
     * came late (see reply_timeout_arm), for an earlier call of this slot:
     * either way for a call that is over, since the slot is ours until
     * the release below. Cancelled, its record goes back now rather than
     * at the deadline, which may be hours away; if it is what completed
     * the call, or names a record reused since, the cancel fails and does
     * nothing (the handle's generation). relaxed: the handle is checked by
     * that generation, not by anything this load could order. The load
     * first: most calls never arm a timer (scheduler.c, deferral). */
    if (atomic_load_explicit(&s->timer, memory_order_relaxed) != 0) {
        gs_timer h = atomic_exchange_explicit(&s->timer, 0, memory_order_relaxed);
        if (h != 0)
            (void)timers_cancel_lazy(rt, h);
    }
    slot_release(rt, s, t.slot);
    return status;
}

int reply_slot_complete(gs_runtime *rt, ticket t, int status, const void *data, size_t len)
{
    reply_slot *s = slot_at(rt, t.slot);
    if (s == NULL)
        return GS_EINVAL;
    uint64_t expected = rs_word(t.seq, RS_WAITING);
    /* acquire: pairs with the waiter's release of WAITING (buf, cap). */
    if (!atomic_compare_exchange_strong_explicit(&s->state, &expected, rs_word(t.seq, RS_WRITING),
                                                 memory_order_acquire, memory_order_relaxed))
        return GS_ENOENT; /* answered, given up, or an old ticket */
    int rc = GS_OK;
    /* A suspended server's deadline is enforced by its wheel timer, which
     * completes the call with GS_ETIMEDOUT on time; only a thread that may
     * be scheduled late needs the completer to check (saves a clock read
     * per in-server call). */
    proc *waiter = atomic_load_explicit(&s->waiter, memory_order_relaxed); /* ordered by the CAS */
    if (waiter == NULL && s->deadline_ns != DEADLINE_NEVER && now_ns() >= s->deadline_ns) {
        /* Too late: the caller's timeout passed (it just has not noticed
         * yet). It gets GS_ETIMEDOUT and the reply is dropped. */
        status = GS_ETIMEDOUT;
        rc = GS_ENOENT;
    }
    if (s->async != NULL)
        return request_complete(rt, s, t, status, data, len, rc);
    if (status == GS_OK) {
        size_t n = len < s->cap ? len : s->cap;
        if (n > 0)
            memcpy(s->buf, data, n);
        s->len = len;
        s->status = len > s->cap ? GS_EMSGSIZE : GS_OK;
    } else {
        s->len = 0;
        s->status = status;
    }
    /* `waiter` was read before DONE: afterwards the slot may be released
     * and reused. */
    /* seq_cst: publishes the reply (release) and is the first half of the
     * Dekker pair with the waiter's `sleeping` store. The slot memory is
     * type-stable, so touching bell after the waiter left is harmless (a
     * spurious wake-up for a later waiter, who re-checks its state). */
    atomic_store_explicit(&s->state, rs_word(t.seq, RS_DONE), memory_order_seq_cst);
    if (waiter != NULL) {
        /* A suspended server: whichever of this completion and its
         * worker's switch away comes second makes it runnable. acq_rel:
         * the reply is published to the worker that resumes it. */
        if (atomic_fetch_sub_explicit(&waiter->extra->resume_latch, 1, memory_order_acq_rel) == 1)
            scheduler_make_runnable(rt, waiter);
    } else {
        reply_slot_ring(s);
    }
    return rc;
}

/* After a seq_cst DONE store: wakes the thread sleeping on the slot, if
 * any (the completer's half of the Dekker pair). */
void reply_slot_ring(reply_slot *s)
{
    store_load_fence();
    if (atomic_load_explicit(&s->sleeping, memory_order_seq_cst)) {
        atomic_fetch_add_explicit(&s->bell, 1, memory_order_release);
        futex_wake(&s->bell, 1);
    }
}

void reply_slot_interrupt(gs_runtime *rt, proc *p, int status)
{
    /* A scan of every slot: gs_kill is rare, and a server keeps no note of
     * the slot it waits on that another thread could read safely. A
     * seqlock read per slot (state, waiter, acquire fence, state again;
     * reply_slot_take puts a release fence before the waiter): an
     * unchanged WAITING state means the waiter read was this call's. The
     * completion's CAS then settles any race with the reply or timeout.
     * p cannot exit meanwhile (the caller holds a reference), and a proc
     * cannot exit while suspended, so a call waiting with p as its waiter
     * (or caller) is p's, not an earlier server's in the same slot. A
     * call whose callback is an init run inside p's callback ends too:
     * p's callback cannot return before that init does. */
    uint32_t high = pool_high_water(&rt->replies);
    for (uint32_t i = 0; i < high; i++) {
        reply_slot *s = slot_at(rt, i);
        if (s == NULL)
            continue;
        /* seq_cst: gs_kill's half of the Dekker pair with run_turn. */
        uint64_t w = atomic_load_explicit(&s->state, memory_order_seq_cst);
        if ((w & 3) != RS_WAITING)
            continue;
        proc *waiter = atomic_load_explicit(&s->waiter, SEQ_FIELD_LOAD);
        proc *caller = atomic_load_explicit(&s->caller, SEQ_FIELD_LOAD);
        SEQ_FENCE(memory_order_acquire);
        if ((waiter == p || caller == p) && atomic_load_explicit(&s->state, memory_order_relaxed) == w)
            (void)reply_slot_complete(rt, (ticket){i, w >> 2}, status, NULL, 0);
    }
}

bool reply_ticket_waiting(gs_runtime *rt, ticket t)
{
    reply_slot *s = slot_at(rt, t.slot);
    return s != NULL && atomic_load_explicit(&s->state, memory_order_relaxed) == rs_word(t.seq, RS_WAITING);
}

void reply_timed_out(gs_runtime *rt, uint64_t slot, uint64_t seq)
{
    (void)reply_slot_complete(rt, (ticket){(uint32_t)slot, seq}, GS_ETIMEDOUT, NULL, 0);
}

int reply_timeout_arm(gs_runtime *rt, ticket t, uint64_t deadline_ns)
{
    gs_timer h;
    int rc = timers_arm_fn(rt, deadline_ns, reply_timed_out, t.slot, t.seq, &h);
    /* Noted even if the call ended meanwhile and the slot went on to a
     * later call: whoever collects next cancels it (reply_slot_collect),
     * which is right for a timer of a call that is over. A note that
     * overwrites another leaves that timer to its deadline, as before
     * notes. relaxed: see reply_slot_collect. */
    if (rc == GS_OK)
        atomic_store_explicit(&slot_at(rt, t.slot)->timer, h, memory_order_relaxed);
    return rc;
}

gs_from reply_from_ticket(gs_runtime *rt, ticket t)
{
    gs_from f = {{(uint64_t)rt->tag << 32 | t.slot, t.seq}};
    return f;
}

int reply_ticket_from(gs_runtime *rt, gs_from from, ticket *out)
{
    if ((from.w[0] >> 32) != rt->tag)
        return GS_EINVAL;
    uint32_t idx = (uint32_t)from.w[0];
    if (slot_at(rt, idx) == NULL || from.w[1] == 0 || from.w[1] >= (UINT64_C(1) << 62))
        return GS_EINVAL;
    *out = (ticket){idx, from.w[1]};
    return GS_OK;
}
