/* runq.c - per-worker run queue (the design of Go's runq, written anew).
 *
 * A ring of RUNQ_SIZE slots indexed by free-running 32-bit counters:
 * entries live in [head, tail). Only the owner advances tail (a plain
 * release store); the owner and thieves advance head by CAS, so an entry
 * is taken by exactly one of them. A thief copies out about half of the
 * entries and then claims them with one CAS on head: if the CAS fails,
 * somebody else took some of them and it retries with fresh values.
 * Slots are atomics (relaxed) because a thief may read a slot that the
 * owner is about to overwrite; the CAS on head tells it whether what it
 * read was still valid.
 *
 * The LIFO slot `next` holds the server the owner made runnable last
 * (ring tokens, ping-pong pairs): it runs next on the same worker, hot in
 * cache. It is not stealable: a thief taking it would bounce a
 * ping-pong pair between cores. The scheduler empties it into the global
 * queue when the owner is about to block in a call.
 */
#include "runq.h"

#include <stddef.h>

void runq_init(runq *q)
{
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    atomic_init(&q->next, NULL);
    for (uint32_t i = 0; i < RUNQ_SIZE; i++)
        atomic_init(&q->ring[i], NULL);
}

bool runq_push(runq *q, void *item)
{
    /* acquire: a thief's CAS that advanced head released its reads of the
     * slots; we may overwrite them only after those reads. */
    uint32_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed); /* own */
    if (tail - head >= RUNQ_SIZE)
        return false;
    atomic_store_explicit(&q->ring[tail % RUNQ_SIZE], item, memory_order_relaxed);
    /* release: a consumer that acquires the new tail sees the slot (and
     * the server's state written before it was made runnable). */
    atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
    return true;
}

void *runq_push_next(runq *q, void *item)
{
    /* Owner only, but acq_rel keeps the server's hand-over ordered like a
     * ring push would. */
    return atomic_exchange_explicit(&q->next, item, memory_order_acq_rel);
}

void *runq_take_next(runq *q)
{
    if (atomic_load_explicit(&q->next, memory_order_relaxed) == NULL)
        return NULL;
    return atomic_exchange_explicit(&q->next, NULL, memory_order_acq_rel);
}

void *runq_pop(runq *q, bool skip_next)
{
    if (!skip_next) {
        void *n = runq_take_next(q);
        if (n != NULL)
            return n;
    }
    uint32_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    for (;;) {
        uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed); /* own */
        if (head == tail)
            return NULL;
        void *item = atomic_load_explicit(&q->ring[head % RUNQ_SIZE], memory_order_relaxed);
        /* acq_rel: release orders our slot read before the owner's (our
         * own, here) later overwrite; acquire pairs with thieves' CAS. On
         * failure head is reloaded (acquire) and we retry. */
        if (atomic_compare_exchange_weak_explicit(&q->head, &head, head + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return item;
    }
}

/* Copies about half of q's entries into out and claims them with a CAS on
 * head. Returns the number claimed (0 if empty). Any thread. */
static uint32_t grab_half(runq *q, void **out)
{
    for (;;) {
        /* acquire on both: tail's release store makes the slots visible;
         * head's acquire orders us after earlier claimers. */
        uint32_t head = atomic_load_explicit(&q->head, memory_order_acquire);
        uint32_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
        uint32_t n = tail - head;
        n = n - n / 2;
        if (n == 0)
            return 0;
        if (n > RUNQ_SIZE / 2 + 1)
            continue; /* head and tail read at different times: retry */
        for (uint32_t i = 0; i < n; i++)
            out[i] = atomic_load_explicit(&q->ring[(head + i) % RUNQ_SIZE], memory_order_relaxed);
        /* acq_rel: release = our slot reads happen before the owner
         * reuses those slots (it acquires head in runq_push). */
        if (atomic_compare_exchange_strong_explicit(&q->head, &head, head + n, memory_order_acq_rel,
                                                    memory_order_relaxed))
            return n;
    }
}

uint32_t runq_take_half(runq *q, void **out)
{
    return grab_half(q, out);
}

void *runq_steal(runq *thief, runq *victim)
{
    void *batch[RUNQ_SIZE / 2 + 1];
    uint32_t n = grab_half(victim, batch);
    if (n == 0)
        return NULL;
    /* Precondition: the thief's ring is empty (it steals only when idle),
     * so the other n - 1 <= RUNQ_SIZE / 2 entries fit. */
    for (uint32_t i = 1; i < n; i++)
        (void)runq_push(thief, batch[i]);
    return batch[0];
}

bool runq_maybe_nonempty(runq *q)
{
    /* seq_cst: read after the parker's fence (see scheduler.c). */
    uint32_t head = atomic_load_explicit(&q->head, memory_order_seq_cst);
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_seq_cst);
    return head != tail; /* the LIFO slot is not stealable: not counted */
}
