/* scheduler.c - the worker pool: run queues, stealing, spinning, parking.
 *
 * Model (after Go's scheduler): N worker threads, each with a local run
 * queue (runq.c: a stealable ring plus a LIFO slot for the server it just
 * woke), and one global queue (injectq.c) that takes servers made runnable
 * by threads outside the pool and overflow from full rings. A worker looks
 * for work in its LIFO slot, its ring, the global queue, then the other
 * workers' rings (stealing half). A server runs at most SERVER_BATCH
 * messages (server.c) before it goes to the back of the ring.
 *
 * Spinning and parking. A worker that finds nothing becomes *the* spinner
 * if nobody spins (at most one, so idle CPUs are not all burned), polls for
 * up to SPIN_MAX_NS (each worker adapts the length to what its spins
 * catch, see spin_policy.h), then parks on the `epoch` futex. Making a
 * server runnable in a stealable place calls notify(): if somebody sleeps
 * and nobody spins, bump epoch and wake one worker. No wake-up is lost,
 * by a Dekker handshake on seq_cst operations:
 *     producer: make work visible; fence; read sleepers, spinning
 *     parker:   sleepers += 1; fence; look for work; futex_wait(epoch, e)
 * Either the producer sees the sleeper and wakes it (the epoch it read
 * before announcing changed, so futex_wait returns at once), or the parker
 * sees the work. A spinner that gives up decrements `spinning` before it
 * re-checks, so a producer that skipped the wake because it saw a spinner
 * has its work seen by that re-check. A spinner that finds work wakes a
 * replacement only if more work is visible (Go wakes one unconditionally;
 * that costs a futex round trip per call in the call_rtt workload).
 * The timer thread, which can make hundreds of servers runnable in one
 * tick, batches them (run_batch): one exchange and one fence per batch,
 * and one system call waking as many sleepers as the batch needs. Per
 * server, the wake-ups cost W8's timer thread a few microseconds each
 * under a hypervisor, so 1,000 timeouts due together fired over a
 * millisecond and more.
 * Rejected: a wake per push (a system call per message), an unbounded
 * spinner (burns a core on an idle runtime; on 2 shared cores it also
 * steals the caller's CPU).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "futex.h"
#include "internal.h"
#include "alloc.h"
#include "spin_policy.h"

#define GLOBAL_BATCH 32u    /* servers moved from the global queue at once */
#define LIFO_STREAK_MAX 32u /* LIFO-slot runs in a row before the ring gets a turn */
/* Every this many looks at the ring, one server of the global queue comes
 * first (Go looks every 61 scheduler ticks; prime, so that it does not
 * fall in step with other periods). An empty global queue costs one load. */
#define GLOBAL_FIRST_EVERY 61u

_Thread_local worker *tl_worker __attribute__((tls_model("initial-exec")));

__attribute__((noinline)) worker *current_worker(void)
{
    return tl_worker;
}

worker *worker_of(gs_runtime *rt)
{
    worker *w = current_worker();
    return w != NULL && w->rt == rt ? w : NULL;
}

static proc *proc_of_link(mbox_node *n)
{
    return (proc *)((char *)n - offsetof(proc, runq_link));
}

static void wake_some(gs_runtime *rt, int n)
{
    atomic_fetch_add_explicit(&rt->epoch, 1, memory_order_release);
    futex_wake(&rt->epoch, n);
}

static void wake_one(gs_runtime *rt)
{
    wake_some(rt, 1);
}

static void notify(gs_runtime *rt)
{
    /* seq_cst fence: orders the caller's "work is visible" store before the
     * loads below (the producer half of the handshake). */
    full_fence();
    if (atomic_load_explicit(&rt->sleepers, memory_order_relaxed) > 0 &&
        atomic_load_explicit(&rt->spinning, memory_order_relaxed) == 0)
        wake_one(rt);
}

static void push_global(gs_runtime *rt, proc *p)
{
    injectq_push(&rt->global, &p->runq_link);
}

/* Appends p to w's ring; when full, moves half of the ring to the global
 * queue first. */
static void push_ring(worker *w, proc *p)
{
    while (!runq_push(&w->rq, p)) {
        void *half[RUNQ_SIZE / 2 + 1];
        uint32_t n = runq_take_half(&w->rq, half);
        for (uint32_t i = 0; i < n; i++)
            push_global(w->rt, half[i]);
    }
}

/* ---- batches from outside threads (see run_batch in internal.h) -------- */

#define RUN_BATCH_MAX 32u /* servers held back at most: a few microseconds of firing */

static _Thread_local run_batch *tl_batch;

void scheduler_batch_begin(gs_runtime *rt, run_batch *b)
{
    *b = (run_batch){rt, NULL, NULL, 0};
    tl_batch = b;
}

static void batch_flush(run_batch *b)
{
    if (b->n == 0)
        return;
    gs_runtime *rt = b->rt;
    injectq_push_chain(&rt->global, b->first, b->last); /* seq_cst exchange: the "work is visible" store */
    unsigned n = b->n;
    b->first = b->last = NULL;
    b->n = 0;
    /* As notify(), for n servers at once: the fence orders the push before
     * the loads. A spinner takes one server and, seeing more, wakes
     * another (spin_for_work); the sleepers are woken for the rest. One
     * worker takes up to GLOBAL_BATCH into its ring, so waking more than
     * the batch needs only costs the woken a look. */
    full_fence();
    int sleepers = atomic_load_explicit(&rt->sleepers, memory_order_relaxed);
    if (sleepers <= 0)
        return;
    unsigned want = atomic_load_explicit(&rt->spinning, memory_order_relaxed) != 0 ? n - 1 : n;
    if (want > (unsigned)sleepers)
        want = (unsigned)sleepers;
    if (want > 0)
        wake_some(rt, (int)want);
}

void scheduler_batch_end(run_batch *b)
{
    batch_flush(b);
    tl_batch = NULL;
}

/* Links p into the current thread's batch (an outside thread's). */
static bool batch_add(gs_runtime *rt, proc *p)
{
    run_batch *b = tl_batch;
    if (b == NULL || b->rt != rt)
        return false;
    /* relaxed: the chain's links are published by batch_flush's exchange
     * and release store (injectq_push_chain). */
    atomic_store_explicit(&p->runq_link.next, NULL, memory_order_relaxed);
    if (b->last != NULL)
        atomic_store_explicit(&b->last->next, &p->runq_link, memory_order_relaxed);
    else
        b->first = &p->runq_link;
    b->last = &p->runq_link;
    if (++b->n >= RUN_BATCH_MAX)
        batch_flush(b);
    return true;
}

void scheduler_make_runnable(gs_runtime *rt, proc *p)
{
    worker *w = current_worker();
    if (w != NULL && w->rt == rt) {
        proc *kicked = runq_push_next(&w->rq, p);
        if (kicked == NULL) {
            /* Only the LIFO slot changed: this worker runs it next, unless
             * its current callback runs long; then an idle worker may take
             * it (see steal_stuck_next). Wake one if nobody looks: relaxed
             * loads, no fence, since this is about latency, not a lost
             * wake-up (the owner runs the slot eventually). */
            if (atomic_load_explicit(&rt->sleepers, memory_order_relaxed) > 0 &&
                atomic_load_explicit(&rt->spinning, memory_order_relaxed) == 0)
                wake_one(rt);
            return;
        }
        push_ring(w, kicked);
    } else {
        if (batch_add(rt, p))
            return;
        push_global(rt, p);
    }
    notify(rt);
}

/* A server that used up its batch, or must run again: back of the ring. */
static void requeue(worker *w, proc *p)
{
    push_ring(w, p);
    notify(w->rt);
}

void scheduler_before_block(gs_runtime *rt)
{
    worker *w = current_worker();
    if (w == NULL || w->rt != rt)
        return;
    /* The worker is about to wait for a reply: hand everything it holds,
     * the LIFO slot included, to the others. */
    proc *next = runq_take_next(&w->rq);
    if (next != NULL)
        push_global(rt, next);
    void *half[RUNQ_SIZE / 2 + 1];
    uint32_t n;
    while ((n = runq_take_half(&w->rq, half)) > 0)
        for (uint32_t i = 0; i < n; i++)
            push_global(rt, half[i]);
    notify(rt);
}

/* Moves up to `max` servers from the global queue: returns one to run,
 * puts the rest in w's ring. find_work's periodic look takes one, so that
 * it does not reorder the worker's own ring; an idle worker GLOBAL_BATCH. */
static proc *take_global(worker *w, unsigned max)
{
    gs_runtime *rt = w->rt;
    if (!injectq_maybe_nonempty(&rt->global) || !injectq_try_lock(&rt->global))
        return NULL;
    proc *first = NULL;
    unsigned moved = 0;
    mbox_node *n;
    while (moved < max && (n = injectq_pop(&rt->global)) != NULL) {
        proc *p = proc_of_link(n);
        if (first == NULL)
            first = p;
        else if (!runq_push(&w->rq, p)) {
            injectq_unlock(&rt->global);
            push_global(rt, p);
            return first;
        }
        moved++;
    }
    injectq_unlock(&rt->global);
    return first;
}

static uint64_t next_random(worker *w)
{
    /* xorshift64: victim order only needs to differ between workers */
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->rng = x;
}

static proc *steal(worker *w)
{
    gs_runtime *rt = w->rt;
    unsigned n = rt->nworkers;
    if (n < 2)
        return NULL;
    unsigned start = (unsigned)(next_random(w) % n);
    for (unsigned i = 0; i < n; i++) {
        worker *v = &rt->workers[(start + i) % n];
        if (v == w || !runq_maybe_nonempty(&v->rq))
            continue;
        proc *p = runq_steal(&w->rq, &v->rq);
        if (p != NULL)
            return p;
    }
    return NULL;
}

static proc *find_work(worker *w)
{
    proc *p;
    /* The LIFO slot first, but not forever: a ping-pong pair would keep
     * the ring's servers waiting. */
    if (w->lifo_streak < LIFO_STREAK_MAX && (p = runq_take_next(&w->rq)) != NULL) {
        w->lifo_streak++;
        return p;
    }
    w->lifo_streak = 0;
    /* Now and then the global queue before the ring: servers woken from
     * outside the pool wait there, and a worker whose ring never runs dry
     * (a server casting to itself goes back to its ring after every
     * batch) would otherwise never look at it. Found by an adversarial
     * test: an outside cast waited seconds behind two self-casting
     * servers. After the LIFO slot, so that a ping-pong pair keeps its
     * hand-off: looked at before the slot, every 11 looks, a batch at a
     * time, it cost pingpong 45%; as here, pingpong and ring are within
     * noise (12 interleaved rounds). */
    if (++w->global_tick == GLOBAL_FIRST_EVERY) {
        w->global_tick = 0;
        if ((p = take_global(w, 1)) != NULL)
            return p;
    }
    if ((p = runq_pop(&w->rq, true)) != NULL || (p = runq_take_next(&w->rq)) != NULL)
        return p;
    if ((p = take_global(w, GLOBAL_BATCH)) != NULL)
        return p;
    return steal(w);
}

/* Whether any work is visible to w (seq_cst loads: the parker's half of the
 * handshake, after its fence). */
static bool work_visible(worker *w)
{
    gs_runtime *rt = w->rt;
    if (atomic_load_explicit(&w->rq.next, memory_order_seq_cst) != NULL)
        return true;
    if (injectq_maybe_nonempty(&rt->global))
        return true;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (runq_maybe_nonempty(&rt->workers[i].rq))
            return true;
    return false;
}


/* Takes a LIFO slot whose owner has not started a turn since the last
 * look (it is stuck in a long callback): the slot is not stolen in
 * normal running, where its owner runs it at once. */
static proc *steal_stuck_next(worker *w, next_watch *seen)
{
    gs_runtime *rt = w->rt;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        worker *v = &rt->workers[i];
        if (v == w)
            continue;
        uint32_t turns = atomic_load_explicit(&v->turns, memory_order_relaxed);
        bool has_next = atomic_load_explicit(&v->rq.next, memory_order_relaxed) != NULL;
        if (has_next && seen[i].had_next && seen[i].turns == turns) {
            proc *p = runq_take_next(&v->rq); /* an exchange: the owner or we get it */
            if (p != NULL)
                return p;
        }
        seen[i].turns = turns;
        seen[i].had_next = has_next;
    }
    return NULL;
}

static proc *spin_for_work(worker *w)
{
    gs_runtime *rt = w->rt;
    int expected = 0;
    /* seq_cst: part of the handshake (a producer that sees a spinner skips
     * its wake-up). */
    if (!atomic_compare_exchange_strong_explicit(&rt->spinning, &expected, 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return NULL;
    uint64_t start = now_ns(), until = start + w->spin_ns;
    proc *p = NULL;
    next_watch *seen = w->next_seen;
    for (unsigned i = 1; !atomic_load_explicit(&rt->exiting, memory_order_relaxed); i++) {
        if ((p = find_work(w)) != NULL)
            break;
        if ((i & 15) == 0) {
            if ((p = steal_stuck_next(w, seen)) != NULL)
                break;
            if (now_ns() >= until)
                break;
            sched_yield(); /* on an oversubscribed machine, let the producer run */
        }
        for (int k = 0; k < 32; k++)
            cpu_relax();
    }
    atomic_fetch_sub_explicit(&rt->spinning, 1, memory_order_seq_cst);
    w->spin_gave_up = p == NULL;
    if (p != NULL) {
        w->spin_ns = spin_after_found(w->spin_ns, now_ns() - start);
        /* We stop spinning to run p: if more work is visible, make sure
         * somebody else looks at it. */
        full_fence();
        if (work_visible(w))
            notify(rt);
    }
    return p;
}

/* Whether another worker's LIFO slot holds a server (it may be stuck
 * behind a long callback: see steal_stuck_next). */
static bool others_have_next(worker *w)
{
    gs_runtime *rt = w->rt;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (&rt->workers[i] != w && atomic_load_explicit(&rt->workers[i].rq.next, memory_order_relaxed) != NULL)
            return true;
    return false;
}

#define STUCK_RECHECK_NS 1000000u /* a parked worker looks again at LIFO slots after 1 ms */

static void park(worker *w)
{
    gs_runtime *rt = w->rt;
    uint64_t parked_at = now_ns();
    atomic_fetch_add_explicit(&w->parks, 1, memory_order_relaxed);
    uint32_t epoch = atomic_load_explicit(&rt->epoch, memory_order_acquire);
    atomic_fetch_add_explicit(&rt->sleepers, 1, memory_order_seq_cst);
    full_fence();
    if (!atomic_load_explicit(&rt->exiting, memory_order_seq_cst) && !work_visible(w)) {
        /* A server in another worker's LIFO slot is not work we may take
         * yet, but it may be stuck: then wake up soon and look again
         * (the watch in next_seen survives, so the second look steals). */
        if (others_have_next(w)) {
            struct timespec at = ns_to_timespec(now_ns() + STUCK_RECHECK_NS);
            futex_wait_until(&rt->epoch, epoch, &at);
        } else {
            futex_wait_until(&rt->epoch, epoch, NULL);
        }
    }
    atomic_fetch_sub_explicit(&rt->sleepers, 1, memory_order_seq_cst);
    if (w->spin_gave_up) { /* judge that spin by this park (spin_policy.h) */
        w->spin_ns = spin_after_park(w->spin_ns, now_ns() - parked_at);
        w->spin_gave_up = false;
    }
}

/* ---- deferred call timeouts (see worker.unarmed) ------------------------
 *
 * Most in-server calls are answered within a few hundred microseconds, so
 * putting each one's timeout on the wheel (a timer record, a trip through
 * the timer thread, a cancel) would cost more than the call. A suspended
 * call's timeout is therefore only noted in its worker's list, in two
 * generations: every DEFER_AGE_NS a promotion arms the calls of the old
 * generation that still wait and makes the young one old. A timeout is thus
 * armed between DEFER_AGE_NS and about twice that after its call began, and
 * only if the call is slow; one due sooner than DEFER_NEAR_NS is armed at
 * once (and young entries due that soon are armed at each promotion).
 * Every worker promotes its own list every ARM_EVERY turns, everybody's
 * every ARM_OTHERS_EVERY turns (its owner may be stuck in a long
 * callback), and a worker about to idle arms every list whole. When every
 * worker is stuck in a long callback (a test that sleeps in two servers
 * on two workers did it: a 100 ms gs_stop timeout fired only when a
 * sleep ended, 400 ms late), nobody would; so the timer thread also
 * promotes, every DEFER_CHECK_NS while any list holds entries, each list
 * whose worker has not promoted it for two generations' time. A list
 * going from empty to not wakes the timer thread if it sleeps longer
 * than that (timers_notice_deferral): a fence and a load per empty list,
 * not per call. */

#define ARM_EVERY 64u          /* turns between two looks at this worker's unarmed timeouts */
#define ARM_OTHERS_EVERY 1024u /* ... and at the other workers' (also whenever idle) */
#define DEFER_AGE_NS 500000u   /* a generation's age before its waiting calls are armed */
#define DEFER_NEAR_NS 2000000u /* deadlines closer than this are armed at once */

static void unarmed_lock(worker *w)
{
    /* acquire/release: the list's contents pass between lock holders. The
     * holders only append or scan: a short hold, so a bounded spin. */
    while (atomic_exchange_explicit(&w->unarmed_lock, true, memory_order_acquire))
        cpu_relax();
}

static void unarmed_unlock(worker *w)
{
    atomic_store_explicit(&w->unarmed_lock, false, memory_order_release);
}

int scheduler_defer_timeout(worker *w, ticket t, uint64_t deadline, bool near_too)
{
    /* promoted_at_ns <= now: a deadline near the last promotion is surely
     * near now. (One that is near now but not near the last promotion is
     * caught by the next promotion, which looks at young deadlines.) */
    if (!near_too && deadline < atomic_load_explicit(&w->promoted_at_ns, memory_order_relaxed) + DEFER_NEAR_NS)
        return GS_EAGAIN; /* the caller arms it now */
    int rc = GS_OK;
    unarmed_lock(w);
    uint32_t n = atomic_load_explicit(&w->nunarmed, memory_order_relaxed);
    if (n == w->cap_unarmed) {
        uint32_t cap = w->cap_unarmed ? w->cap_unarmed * 2 : 64;
        struct deferred_timeout *grown = gs_realloc(w->unarmed, cap * sizeof *grown);
        if (grown == NULL) {
            rc = GS_ENOMEM;
        } else {
            w->unarmed = grown;
            w->cap_unarmed = cap;
        }
    }
    if (rc == GS_OK) {
        w->unarmed[n] = (struct deferred_timeout){t, deadline};
        atomic_store_explicit(&w->nunarmed, n + 1, memory_order_relaxed);
    }
    unarmed_unlock(w);
    if (rc == GS_OK && n == 0) {
        /* seq_cst fence: the count above before the timer thread's
         * `sleeping` flag is read; it stores the flag, then reads the
         * counts (scheduler_has_unarmed): one of us sees the other. */
        full_fence();
        timers_notice_deferral(w->rt);
    }
    return rc;
}

enum { ARM_DONE, ARM_KEEP, ARM_EXPIRED };
#define EXPIRED_BATCH 32u /* calls one promotion times out itself, at most */

/* Arms d's timeout if its call still waits: ARM_DONE (armed, or answered
 * already), ARM_KEEP (no timer record to be had: out of memory, or every
 * record taken by GS_TIMERS_MAX timers; try again later), ARM_EXPIRED
 * (its deadline has passed: the promotion completes the call itself, so
 * a call keeps its timeout even when no record can be had). */
static int arm_one(gs_runtime *rt, const struct deferred_timeout *d, uint64_t now)
{
    if (!reply_ticket_waiting(rt, d->t))
        return ARM_DONE; /* answered already: no timer needed */
    if (d->deadline <= now)
        return ARM_EXPIRED;
    return reply_timeout_arm(rt, d->t, d->deadline) == GS_OK ? ARM_DONE : ARM_KEEP;
}

/* Promotes v's list (see above); `all`: arms every waiting call, young or
 * old (before idling, when nobody may look again for a long time). */
static void arm_deferred_of(worker *v, bool all)
{
    if (atomic_load_explicit(&v->nunarmed, memory_order_relaxed) == 0)
        return;
    uint64_t now = now_ns();
    if (!all && now - atomic_load_explicit(&v->promoted_at_ns, memory_order_relaxed) < DEFER_AGE_NS)
        return; /* unlocked read: a stale value only delays the promotion */
    ticket expired[EXPIRED_BATCH];
    uint32_t nexpired = 0;
    unarmed_lock(v);
    uint32_t n = atomic_load_explicit(&v->nunarmed, memory_order_relaxed), kept = 0;
    uint32_t old = all ? n : v->old_unarmed;
    for (uint32_t i = 0; i < n; i++) {
        struct deferred_timeout *d = &v->unarmed[i];
        if (i < old || d->deadline < now + DEFER_NEAR_NS) {
            int r = arm_one(v->rt, d, now);
            if (r == ARM_DONE)
                continue;
            if (r == ARM_EXPIRED && nexpired < EXPIRED_BATCH) {
                expired[nexpired++] = d->t;
                continue;
            }
        }
        v->unarmed[kept++] = *d; /* young, not armed for lack of a record, or left for the next promotion */
    }
    v->old_unarmed = kept; /* what stays is the old generation now */
    atomic_store_explicit(&v->promoted_at_ns, now, memory_order_relaxed);
    atomic_store_explicit(&v->nunarmed, kept, memory_order_relaxed);
    unarmed_unlock(v);
    /* Outside the lock, which others take with a bounded spin: completing
     * a call resumes its server. One answered meanwhile is left alone (the
     * completion loses to the reply). */
    for (uint32_t i = 0; i < nexpired; i++)
        reply_timed_out(v->rt, expired[i].slot, expired[i].seq);
}

/* This worker's list, and every worker's if `others`. */
static void arm_deferred(worker *w, bool others, bool all)
{
    gs_runtime *rt = w->rt;
    if (!others) {
        arm_deferred_of(w, all);
        return;
    }
    for (unsigned i = 0; i < rt->nworkers; i++)
        arm_deferred_of(&rt->workers[i], all);
}

bool scheduler_has_unarmed(gs_runtime *rt)
{
    /* seq_cst: the timer thread's side of the handshake with
     * scheduler_defer_timeout's fence (after its seq_cst `sleeping`); for
     * an idling worker only a hint (a plain load on x86). */
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (atomic_load_explicit(&rt->workers[i].nunarmed, memory_order_seq_cst) != 0)
            return true;
    return false;
}

void scheduler_promote_stalled(gs_runtime *rt, uint64_t now)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        worker *v = &rt->workers[i];
        /* relaxed hints: a stale value only delays or repeats a look. */
        if (atomic_load_explicit(&v->nunarmed, memory_order_relaxed) != 0 &&
            now - atomic_load_explicit(&v->promoted_at_ns, memory_order_relaxed) >= 2 * DEFER_AGE_NS)
            arm_deferred_of(v, false);
    }
}

/* ---- turns on fibers --------------------------------------------------- */

void fiber_body(fiber *f)
{
    fiber_first_arrival();
    for (;;) {
        bool again = server_run(f->proc);
        f->status = again ? FIBER_AGAIN : FIBER_IDLE;
        fiber_leave(fiber_current_home(), f);
    }
}

static void fiber_release(worker *w, fiber *f)
{
    if (w->spare == NULL)
        w->spare = f;
    else
        fiber_put(w->rt->fibers, f);
}

/* Runs one turn of p: on the fiber p's suspended callback waits on, or on
 * the worker's spare fiber. Without a fiber (out of memory) the turn runs
 * on the worker's own stack, and calls made in it block the worker. */
static void run_turn(worker *w, proc *p)
{
    fiber *f;
    /* owner-only counter: a plain store (thieves only compare it) */
    atomic_store_explicit(&w->turns, atomic_load_explicit(&w->turns, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (p->extra != NULL && p->extra->fiber != NULL) {
        f = p->extra->fiber; /* resume a suspended callback */
        p->extra->fiber = NULL;
        atomic_fetch_add_explicit(&w->resumed, 1, memory_order_relaxed);
    } else {
        f = w->spare != NULL ? w->spare : fiber_get(w->rt->fibers);
        w->spare = NULL;
        if (f == NULL) {
            if (server_run(p))
                requeue(w, p);
            return;
        }
        f->proc = p;
    }
    w->running = f;
    fiber_enter(&w->home, f);
    w->running = NULL;
    set_current_proc(NULL);
    switch (f->status) {
    case FIBER_SUSPENDED: {
        /* The fiber stays with its server. Whichever of this worker and
         * the reply comes second makes the server runnable again. The
         * ticket is read first: until our decrement the server cannot
         * resume and make another call. */
        proc *sp = f->proc, *caller = sp->extra->wait_caller;
        ticket waiting = {sp->extra->wait_slot, sp->extra->wait_seq};
        if (atomic_fetch_sub_explicit(&sp->extra->resume_latch, 1, memory_order_seq_cst) == 1) {
            scheduler_make_runnable(w->rt, sp);
        } else if ((store_load_fence(), (atomic_load_explicit(&sp->ctl, memory_order_seq_cst) |
                                         (caller != NULL ? atomic_load_explicit(&caller->ctl, memory_order_seq_cst)
                                                         : 0)) &
                                            CTL_KILLED)) {
            /* gs_kill ends the call a killed server waits in, but finds it
             * by a scan of the slots, which may have run between the
             * caller's look at KILLED (send_and_wait) and its slot's
             * WAITING. Dekker: gs_kill sets KILLED (a seq_cst RMW), then
             * scans (seq_cst loads); the caller published WAITING, then
             * this RMW (a full barrier on x86; elsewhere the fence) and
             * load: one of the two sees the other. A completion that
             * loses the slot's CAS (the reply, or gs_kill's own) does
             * nothing. */
            (void)reply_slot_complete(w->rt, waiting, GS_EKILLED, NULL, 0);
        }
        break;
    }
    case FIBER_AGAIN:
        requeue(w, f->proc);
        fiber_release(w, f);
        break;
    case FIBER_IDLE:
        fiber_release(w, f); /* f->proc may be gone: not touched */
        break;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    gs_runtime *rt = w->rt;
    tl_worker = w;
    char name[16]; /* the kernel's limit, with the NUL */
    snprintf(name, sizeof name, "gs-worker-%u", w->index);
    (void)pthread_setname_np(pthread_self(), name); /* for top, perf and gdb; best effort */
    fiber_home_init(&w->home);
    while (!atomic_load_explicit(&rt->exiting, memory_order_acquire)) {
        if ((++w->turns_since_arm & (ARM_EVERY - 1)) == 0)
            arm_deferred(w, (w->turns_since_arm & (ARM_OTHERS_EVERY - 1)) == 0, false);
        proc *p = find_work(w);
        if (p == NULL && scheduler_has_unarmed(rt)) {
            arm_deferred(w, true, true); /* before idling */
            p = find_work(w);
        }
        if (p == NULL)
            p = spin_for_work(w);
        if (p == NULL) {
            park(w);
            continue;
        }
        run_turn(w, p);
    }
    if (w->spare != NULL)
        fiber_put(rt->fibers, w->spare);
    w->spare = NULL;
    /* Other workers may still look at this list: empty it under its lock
     * (every call is over by now: the runtime has no servers left). */
    unarmed_lock(w);
    free(w->unarmed);
    w->unarmed = NULL;
    w->cap_unarmed = w->old_unarmed = 0;
    atomic_store_explicit(&w->nunarmed, 0, memory_order_relaxed);
    unarmed_unlock(w);
    tl_worker = NULL;
    registry_thread_exit(); /* if this worker read the name table */
    return NULL;
}

int scheduler_start(gs_runtime *rt)
{
    if (fiber_pool_create(&rt->fibers) != 0)
        return GS_ENOMEM;
    injectq_init(&rt->global);
    atomic_init(&rt->epoch, 0);
    atomic_init(&rt->sleepers, 0);
    atomic_init(&rt->spinning, 0);
    atomic_init(&rt->exiting, false);
    rt->workers = gs_aligned_alloc(64, sizeof(worker) * rt->nworkers);
    if (rt->workers == NULL) {
        fiber_pool_destroy(rt->fibers);
        return GS_ENOMEM;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        worker *w = &rt->workers[i];
        runq_init(&w->rq);
        w->rt = rt;
        w->index = i;
        w->lifo_streak = 0;
        w->global_tick = 0;
        w->spin_ns = SPIN_MAX_NS;
        w->spin_gave_up = false;
        w->rng = 0x9E3779B97F4A7C15ull * (i + 1);
        w->spare = w->running = NULL;
        atomic_init(&w->turns, 0);
        memset(w->next_seen, 0, sizeof w->next_seen);
        w->unarmed = NULL;
        w->cap_unarmed = w->turns_since_arm = w->old_unarmed = 0;
        atomic_init(&w->promoted_at_ns, now_ns());
        w->reply_cache.n = 0;
        timer_arming_init(&w->timer_side);
        atomic_init(&w->nunarmed, 0);
        atomic_init(&w->unarmed_lock, false);
        atomic_init(&w->messages, 0);
        atomic_init(&w->parks, 0);
        atomic_init(&w->suspended, 0);
        atomic_init(&w->resumed, 0);
        atomic_init(&w->blocked, 0);
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        if (pthread_create(&rt->workers[i].thread, NULL, worker_main, &rt->workers[i]) != 0) {
            atomic_store(&rt->exiting, true);
            atomic_fetch_add(&rt->epoch, 1);
            futex_wake(&rt->epoch, (int)rt->nworkers);
            for (unsigned j = 0; j < i; j++)
                pthread_join(rt->workers[j].thread, NULL);
            free(rt->workers);
            rt->workers = NULL;
            fiber_pool_destroy(rt->fibers);
            rt->fibers = NULL;
            return GS_EAGAIN;
        }
    }
    return GS_OK;
}

void scheduler_stop(gs_runtime *rt)
{
    atomic_store_explicit(&rt->exiting, true, memory_order_seq_cst);
    atomic_fetch_add_explicit(&rt->epoch, 1, memory_order_seq_cst);
    futex_wake(&rt->epoch, (int)rt->nworkers);
    for (unsigned i = 0; i < rt->nworkers; i++)
        pthread_join(rt->workers[i].thread, NULL);
}

void scheduler_destroy(gs_runtime *rt)
{
    free(rt->workers);
    rt->workers = NULL;
    fiber_pool_destroy(rt->fibers);
    rt->fibers = NULL;
}

int gs_runtime_stats_get(gs_runtime *rt, gs_runtime_stats *out)
{
    if (rt == NULL || out == NULL)
        return GS_EINVAL;
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        worker *w = &rt->workers[i];
        out->messages += atomic_load_explicit(&w->messages, memory_order_relaxed);
        out->parks += atomic_load_explicit(&w->parks, memory_order_relaxed);
        out->calls_suspended += atomic_load_explicit(&w->suspended, memory_order_relaxed);
        out->calls_resumed += atomic_load_explicit(&w->resumed, memory_order_relaxed);
        out->calls_blocked += atomic_load_explicit(&w->blocked, memory_order_relaxed);
    }
    out->stacks_in_use = fiber_pool_in_use(rt->fibers);
    out->servers = atomic_load_explicit(&rt->live, memory_order_relaxed);
    out->workers = rt->nworkers;
    out->timers = timer_service_held(rt);
    out->monitors = atomic_load_explicit(&rt->monitors_in_use, memory_order_relaxed);
    return GS_OK;
}
