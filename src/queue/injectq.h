/* injectq.h - the global run queue: intrusive lock-free MPSC queue whose
 * consumer side is guarded by a try-lock token, so any worker may consume.
 *
 * Who may call what:
 *   injectq_init              before sharing
 *   injectq_push, _push_chain any thread, concurrently
 *   injectq_try_lock/unlock   any worker; injectq_pop only between them
 *   injectq_maybe_nonempty    any thread (a hint; seq_cst for the
 *                             park/notify handshake, see scheduler.c)
 * A node must not be pushed again before injectq_pop has returned it.
 */
#ifndef GS_QUEUE_INJECTQ_H
#define GS_QUEUE_INJECTQ_H

#include <stdatomic.h>
#include <stdbool.h>

#include "mailbox.h" /* mbox_node */

typedef struct injectq {
    _Alignas(64) _Atomic(mbox_node *) head; /* producers */
    /* written by the token holder only; atomic because
     * injectq_maybe_nonempty reads it from other threads */
    _Alignas(64) _Atomic(mbox_node *) tail;
    mbox_node stub;
    atomic_bool locked;
} injectq;

void injectq_init(injectq *q);
void injectq_push(injectq *q, mbox_node *n);
/* Pushes the chain first -> ... -> last (linked through next) with one
 * exchange: it is popped in that order, with nothing in between. */
void injectq_push_chain(injectq *q, mbox_node *first, mbox_node *last);
bool injectq_try_lock(injectq *q);
void injectq_unlock(injectq *q);
/* Returns a node that is fully unlinked, or NULL if the queue is empty or
 * a producer is half-way through a push (try again later). */
mbox_node *injectq_pop(injectq *q);
bool injectq_maybe_nonempty(injectq *q);

#endif
