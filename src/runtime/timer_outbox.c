/* timer_outbox.c - armed timers held by their arming thread for a while.
 *
 * Problem: every armed timer was pushed to the timer thread's inbox at
 * once, and the timer thread, chasing the inbox, took it in at once. So
 * each timer cost two cross-core trips: the inbox's shared head line,
 * and the record itself, which the timer thread wrote (DRAINED) before
 * the arming thread could cancel it. A timer cancelled right after it was
 * armed (half of W7's, and the usual fate of a guard timeout) paid a
 * third: its CAS pulled the record back, and the timer thread then freed
 * it into its own cache, from where it came back cold. Arming and
 * cancelling at once (gsbench timer_guard) cost 66-99 ns of the arming
 * thread and as much again of the timer thread per timer; now 40-44 ns
 * in all (W7: arming CPU 124 -> 110 ns per timer).
 *
 * Design: an arming thread pushes a timer whose deadline is at least
 * HOLD_AHEAD_NS away onto its own outbox (a Treiber stack whose top only
 * its owner pushes to: a CAS on a line it owns) and sends the outbox on
 * as one chain (one exchange on the inbox) when it holds OUTBOX_MAX, when
 * a nearer timer is armed, when the timer thread sleeps past the new
 * timer's deadline, or when the thread exits or arms on another runtime
 * (thread_cache.c). On the way it frees the records cancelled meanwhile into its own
 * cache, where the next arming finds them warm: such timers never leave
 * the thread. The timer thread takes an outbox whole (an exchange) when
 * its earliest deadline comes within HOLD_AHEAD_NS of now, and it plans
 * every sleep to end HOLD_AHEAD_NS before the earliest deadline held in
 * any outbox, so a held timer is in the wheel well before its tick,
 * whoever goes quiet. It learns that deadline from one word, the hint:
 *   - Ordering: a flush sends what it holds oldest first, before the
 *     timer that caused it, so one thread's timers still reach the wheel
 *     in the order armed (tests rely on it: a near timer that fired means
 *     every timer armed before it is in the wheel).
 *   - The hint (timer_service.held_hint_ns) is at or before the earliest
 *     deadline held in any outbox. An owner lowers it after each push
 *     (a CAS only when its deadline is earlier: in the steady state a
 *     load of a line that stays shared). Only the timer thread raises
 *     it: to UINT64_MAX, then it walks the outboxes, taking those due
 *     and lowering the hint to the earliest left (sweep_outboxes). All
 *     seq_cst: a push that the walk's read of its outbox missed comes
 *     after the reset, so its owner's lowering lands after it too. A
 *     hint left early by a timer that was flushed or cancelled since
 *     costs one needless walk, which corrects it. So the thread walks
 *     the outboxes only when a held timer may be due to be taken in,
 *     not on a period: before, a walk every 100 us while awake, and two
 *     before each sleep, cost it 11% of a CPU with 1,000 outside threads
 *     holding a timer each, and 32% with 4,000.
 *   - Sleeping: the owner pushes and lowers the hint (seq_cst), then
 *     reads `sleeping` and `sleep_until_ns`; the timer thread stores
 *     them, then reads the hint again (seq_cst): one of the two sees the
 *     other (Dekker, as for the inbox in timers.c).
 *   - Cancelling a held timer is the usual CAS (timers.c); whoever takes
 *     the record out of the outbox afterwards frees it.
 * Costs: a timer cancelled while held in the outbox of a thread that
 * then stops arming keeps its record (OUTBOX_MAX - 1 per thread at most)
 * until the outbox is sent on or taken, at the latest HOLD_AHEAD_NS
 * before the earliest deadline held; such records are not counted in
 * gs_runtime_stats.timers. A walk covers every outbox (workers', and
 * outside threads' under the thread caches' lock): O(threads), but only
 * when the hint comes due.
 */
#include "futex.h"
#include "timer_service.h"

#define OUTBOX_MAX 32u /* records held before the outbox is sent on */

void outbox_flush(gs_runtime *rt, timer_arming *a)
{
    /* acquire: the records' fields, and a canceller's CAS, happen before. */
    mbox_node *n = atomic_exchange_explicit(&a->outbox.top, NULL, memory_order_acquire);
    a->outbox.count = 0;
    mbox_node *first = NULL, *last = NULL;
    uint32_t live = 0;
    uint64_t min_deadline = UINT64_MAX;
    while (n != NULL) { /* newest first: relink oldest first */
        mbox_node *next = atomic_load_explicit(&n->next, memory_order_relaxed);
        timer_rec *r = rec_from_inbox(n);
        uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
        if ((w & 3) == TS_CANCELLED) {
            /* Its canceller is done with it (the acquire load above
             * ordered its reads before this reuse): into our cache. */
            rec_recycle(rt->timers, r, &a->cache);
        } else {
            /* Still pending (a cancel after this look is met by the timer
             * thread's take_in, which frees the record then). */
            atomic_store_explicit(&n->next, first, memory_order_relaxed);
            first = n;
            if (last == NULL)
                last = n;
            live++;
            uint64_t deadline = atomic_load_explicit(&r->deadline_ns, memory_order_relaxed);
            if (deadline < min_deadline)
                min_deadline = deadline;
        }
        n = next;
    }
    if (first != NULL)
        timers_submit_chain(rt->timers, first, last, live, min_deadline);
}

void outbox_hold(gs_runtime *rt, timer_arming *a, timer_rec *r)
{
    timer_outbox *ob = &a->outbox;
    uint64_t deadline = atomic_load_explicit(&r->deadline_ns, memory_order_relaxed);
    mbox_node *top = atomic_load_explicit(&ob->top, memory_order_relaxed);
    for (;;) {
        /* relaxed: only the owner writes min_deadline_ns, and the CAS
         * below (release) publishes it with the record it covers. */
        uint64_t min = atomic_load_explicit(&ob->min_deadline_ns, memory_order_relaxed);
        atomic_store_explicit(&ob->min_deadline_ns, top == NULL || deadline < min ? deadline : min,
                              memory_order_relaxed);
        atomic_store_explicit(&r->inbox_link.next, top, memory_order_relaxed);
        /* seq_cst: the owner's half of the sleep handshake (see above).
         * It fails only if the timer thread took the outbox meanwhile. */
        if (atomic_compare_exchange_weak_explicit(&ob->top, &top, &r->inbox_link, memory_order_seq_cst,
                                                  memory_order_relaxed))
            break;
    }
    ob->count = top == NULL ? 1 : ob->count + 1;
    if (ob->count >= OUTBOX_MAX) {
        outbox_flush(rt, a);
        return;
    }
    timer_service *ts = rt->timers;
    store_load_fence();
    outbox_hint_lower(ts, deadline);
    /* A sleeping timer thread takes the outboxes in when it wakes up, and
     * it planned that for HOLD_AHEAD_NS before the earliest timer it saw
     * held. A timer due before that wake-up goes on now (submit_chain
     * wakes the thread). */
    if (atomic_load_explicit(&ts->sleeping, memory_order_seq_cst) &&
        deadline < atomic_load_explicit(&ts->sleep_until_ns, memory_order_seq_cst))
        outbox_flush(rt, a);
}

void outbox_hint_lower(timer_service *ts, uint64_t deadline_ns)
{
    /* seq_cst: see "The hint" above. */
    uint64_t h = atomic_load_explicit(&ts->held_hint_ns, memory_order_seq_cst);
    while (deadline_ns < h &&
           !atomic_compare_exchange_weak_explicit(&ts->held_hint_ns, &h, deadline_ns, memory_order_seq_cst,
                                                  memory_order_seq_cst))
        ;
}

uint64_t outbox_earliest(timer_outbox *ob)
{
    /* seq_cst: the timer thread's half of the sleep handshake; it also
     * acquires the minimum that the owner stored before its push. */
    if (atomic_load_explicit(&ob->top, memory_order_seq_cst) == NULL)
        return UINT64_MAX;
    return atomic_load_explicit(&ob->min_deadline_ns, memory_order_relaxed);
}

bool outbox_take(timer_outbox *ob, uint64_t horizon_ns, outbox_chain *into, uint64_t *kept_min)
{
    uint64_t earliest = outbox_earliest(ob);
    if (earliest >= horizon_ns) {
        if (earliest < *kept_min)
            *kept_min = earliest;
        return false;
    }
    mbox_node *n = atomic_exchange_explicit(&ob->top, NULL, memory_order_acquire);
    mbox_node *first = NULL, *last = NULL;
    while (n != NULL) { /* newest first: relink oldest first */
        mbox_node *next = atomic_load_explicit(&n->next, memory_order_relaxed);
        atomic_store_explicit(&n->next, first, memory_order_relaxed);
        first = n;
        if (last == NULL)
            last = n;
        n = next;
    }
    if (first == NULL)
        return false; /* its owner flushed it in between */
    if (into->first == NULL)
        into->first = first;
    else
        atomic_store_explicit(&into->last->next, first, memory_order_relaxed);
    into->last = last;
    return true;
}
