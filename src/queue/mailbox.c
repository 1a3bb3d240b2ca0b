/* mailbox.c - intrusive lock-free MPSC queue with an "idle" bit.
 *
 * The problem: many threads send to one server, one worker at a time
 * consumes, and exactly one sender must notice that the server needs to be
 * put on a run queue. A send must cost one atomic exchange.
 *
 * The algorithm is Vyukov's intrusive MPSC queue in the variant the Pony
 * runtime uses for actor mailboxes:
 *   - `head` is the newest node; a producer exchanges itself into `head`
 *     and then links the previous head to itself (two steps: between them
 *     the queue is "not yet linked", and the consumer sees it as empty);
 *   - `tail` is the last node the consumer took; the node after it is the
 *     next message. A taken node stays as the tail until the next pop, so
 *     it is freed one pop later (mailbox_pop hands it back as `retired`).
 *   - Bit 0 of `head` means "idle": the queue is empty and no worker holds
 *     or will run the server. Only the consumer sets it (mailbox_try_idle,
 *     a CAS that succeeds only if no push happened since its last pop), and
 *     only a producer clears it (its exchange stores a clean pointer). The
 *     producer whose exchange returned a value with bit 0 set is the one
 *     that must schedule the server: exactly one per idle period.
 *   - A consumer never waits inside the queue: a producer preempted between
 *     its two steps makes pop return NULL and try_idle fail, and the server
 *     is simply run again later.
 * Rejected: a separate atomic "scheduled" flag (a second atomic RMW per
 * send); a mutex (senders would sleep).
 */
#include "mailbox.h"

#include <stddef.h>

void mailbox_init(mailbox *mb)
{
    atomic_init(&mb->stub.next, NULL);
    mb->tail = &mb->stub;
    /* Bit 0 clear: "scheduled". The owner calls mailbox_try_idle when it is
     * ready to be scheduled by pushes (after init). */
    atomic_init(&mb->head, (uintptr_t)&mb->stub);
}

bool mailbox_push(mailbox *mb, mbox_node *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    /* acq_rel: release publishes n->next = NULL (and, through the link
     * store below, the payload) to the next producer, which will write
     * n->next; acquire makes the previous producer's `prev->next = NULL`
     * (or the consumer's CAS that set the idle bit) happen before our own
     * store into prev->next and before we schedule the consumer. */
    uintptr_t prev = atomic_exchange_explicit(&mb->head, (uintptr_t)n, memory_order_acq_rel);
    mbox_node *prev_node = (mbox_node *)(prev & ~(uintptr_t)1);
    /* release: the consumer's acquire load of prev->next sees the node's
     * contents (header and payload) written before this store. prev_node
     * is alive: the consumer frees a node only after it has read a
     * non-NULL next from it, which is this very store. */
    atomic_store_explicit(&prev_node->next, n, memory_order_release);
    return (prev & 1) != 0;
}

mbox_node *mailbox_pop(mailbox *mb, mbox_node **retired)
{
    mbox_node *tail = mb->tail;
    /* acquire: pairs with the producer's release store of the link. */
    mbox_node *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    *retired = NULL;
    if (next == NULL)
        return NULL;
    mb->tail = next;
    if (tail != &mb->stub)
        *retired = tail;
    return next;
}

bool mailbox_try_idle(mailbox *mb)
{
    uintptr_t tail = (uintptr_t)mb->tail;
    /* relaxed: only a hint; the CAS below decides. */
    uintptr_t head = atomic_load_explicit(&mb->head, memory_order_relaxed);
    if (head != tail)
        return false; /* a push completed or is half-way: run again */
    /* release: everything this consumer did while it held the server
     * (callbacks writing state, tail updates) happens before the accesses
     * of the worker that runs the server next, which is scheduled by the
     * producer whose acquire exchange reads this value. */
    return atomic_compare_exchange_strong_explicit(&mb->head, &tail, tail | 1, memory_order_release,
                                                   memory_order_relaxed);
}

mbox_node *mailbox_tail_node(mailbox *mb)
{
    return mb->tail == &mb->stub ? NULL : mb->tail;
}

bool mailbox_claim(mailbox *mb)
{
    uintptr_t head = atomic_load_explicit(&mb->head, memory_order_acquire);
    if ((head & 1) == 0)
        return false; /* scheduled or running: it will look at its flags */
    /* acq_rel, as a push's exchange: acquire the consumer's release of
     * the idle bit (its last turn happens before the next one). */
    return atomic_compare_exchange_strong_explicit(&mb->head, &head, head & ~(uintptr_t)1, memory_order_acq_rel,
                                                   memory_order_relaxed);
}
