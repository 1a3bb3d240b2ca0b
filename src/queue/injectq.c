/* injectq.c - the global run queue (servers made runnable by threads
 * outside the worker pool, and overflow from full local queues).
 *
 * Vyukov's intrusive MPSC queue with a dedicated stub node: unlike the
 * mailbox variant, a popped node is completely unlinked when pop returns
 * (the stub is re-inserted when the last real node would otherwise stay as
 * the tail), because a popped server is scheduled elsewhere and may be
 * pushed here again at once. Producers never block; the single-consumer
 * side is shared by the workers through a try-lock token: a worker that
 * cannot get it looks for work elsewhere (whoever holds it is already
 * draining the queue). Rejected: a mutex-protected list (outside threads
 * would sleep while a worker holds it).
 */
#include "injectq.h"

#include <stddef.h>

void injectq_init(injectq *q)
{
    atomic_init(&q->stub.next, NULL);
    atomic_init(&q->head, &q->stub);
    atomic_init(&q->tail, &q->stub);
    atomic_init(&q->locked, false);
}

void injectq_push(injectq *q, mbox_node *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    /* seq_cst (at least acq_rel, see mailbox_push): the exchange is also the
     * "work is visible" store of the park/notify handshake, which the
     * notifier follows with a seq_cst fence. */
    mbox_node *prev = atomic_exchange_explicit(&q->head, n, memory_order_seq_cst);
    /* release: the consumer's acquire load of the link sees the node. */
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

void injectq_push_chain(injectq *q, mbox_node *first, mbox_node *last)
{
    /* The links inside the chain were stored before (relaxed): the release
     * store below publishes them with the first one, and the consumer
     * reaches each of them through that store. */
    atomic_store_explicit(&last->next, NULL, memory_order_relaxed);
    mbox_node *prev = atomic_exchange_explicit(&q->head, last, memory_order_seq_cst); /* as in injectq_push */
    atomic_store_explicit(&prev->next, first, memory_order_release);
}

bool injectq_try_lock(injectq *q)
{
    /* acquire: the previous holder's writes to tail happen before ours. */
    return !atomic_exchange_explicit(&q->locked, true, memory_order_acquire);
}

void injectq_unlock(injectq *q)
{
    atomic_store_explicit(&q->locked, false, memory_order_release);
}

/* tail is read and written only by the token holder (relaxed); the
 * stores are atomic so that injectq_maybe_nonempty may peek at it. */
static mbox_node *tail_get(injectq *q)
{
    return atomic_load_explicit(&q->tail, memory_order_relaxed);
}

static void tail_set(injectq *q, mbox_node *n)
{
    atomic_store_explicit(&q->tail, n, memory_order_relaxed);
}

mbox_node *injectq_pop(injectq *q)
{
    mbox_node *tail = tail_get(q);
    mbox_node *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &q->stub) {
        if (next == NULL)
            return NULL;
        tail_set(q, next);
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next != NULL) {
        tail_set(q, next);
        return tail;
    }
    /* tail is the last linked node. If it is not the head, a producer is
     * between its exchange and its link store: try later. */
    if (tail != atomic_load_explicit(&q->head, memory_order_acquire))
        return NULL;
    /* Put the stub behind tail so that tail can leave the queue. */
    injectq_push(q, &q->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next != NULL) {
        tail_set(q, next);
        return tail;
    }
    return NULL; /* a producer got in between: its link is pending */
}

bool injectq_maybe_nonempty(injectq *q)
{
    /* seq_cst: this load follows the parker's seq_cst fence (see
     * scheduler.c). The queue is empty exactly when both ends are the
     * stub: the stub is in the queue at most once, so no node can sit
     * between them. A node pushed before the stub was re-inserted leaves
     * head == stub but tail != stub, hence both checks. */
    if (atomic_load_explicit(&q->head, memory_order_seq_cst) != &q->stub)
        return true;
    return atomic_load_explicit(&q->tail, memory_order_seq_cst) != &q->stub;
}
