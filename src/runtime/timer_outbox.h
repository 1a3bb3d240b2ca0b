/* timer_outbox.h - an arming thread's side of the timer service: its cache
 * of free records and its outbox of armed ones not yet sent to the timer
 * thread. See timer_outbox.c for the design.
 */
#ifndef GS_RUNTIME_TIMER_OUTBOX_H
#define GS_RUNTIME_TIMER_OUTBOX_H

#include <stdatomic.h>
#include <stdint.h>

#include "../queue/mailbox.h" /* mbox_node */
#include "pool.h"

typedef struct timer_outbox {
    /* Held records, newest first, linked through their inbox links. The
     * owner pushes; the owner or the timer thread takes them all. */
    _Atomic(mbox_node *) top;
    /* At most the earliest deadline held (a hint for the timer thread:
     * written by the owner only, before the push that it covers). */
    _Atomic uint64_t min_deadline_ns;
    uint32_t count; /* the owner's: pushed since its last flush (more if the timer thread took some) */
} timer_outbox;

/* What a thread arms timers with: a worker's own, or an outside thread's
 * (thread_cache.c). */
typedef struct timer_arming {
    pool_cache cache;
    timer_outbox outbox;
} timer_arming;

static inline void timer_arming_init(timer_arming *a)
{
    a->cache.n = 0;
    atomic_init(&a->outbox.top, NULL);
    atomic_init(&a->outbox.min_deadline_ns, 0);
    a->outbox.count = 0;
}

/* A chain of records taken from outboxes, oldest first. */
typedef struct outbox_chain {
    mbox_node *first, *last;
} outbox_chain;

#endif
