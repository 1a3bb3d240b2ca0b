/* runq.h - a worker's local run queue: a bounded ring that its owner
 * fills and empties FIFO and that other workers steal half of, plus a
 * one-entry LIFO slot ("next") for the server the owner just woke.
 *
 * Who may call what:
 *   runq_init, runq_push, runq_push_next, runq_pop     the owner only
 *   runq_steal                                           any other worker
 *   runq_take_next                                       the owner; a thief
 *                     only when the owner is stuck in a long turn (an
 *                     exchange: exactly one of them gets the entry)
 *   runq_maybe_nonempty                                  any thread (hint)
 * Entries are opaque non-NULL pointers.
 */
#ifndef GS_QUEUE_RUNQ_H
#define GS_QUEUE_RUNQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RUNQ_SIZE 256u /* a power of two */

typedef struct runq {
    _Alignas(64) _Atomic uint32_t head; /* consumers: owner and thieves (CAS) */
    _Atomic uint32_t tail;              /* written by the owner only */
    _Atomic(void *) next;               /* LIFO slot: owner only, never stolen */
    _Atomic(void *) ring[RUNQ_SIZE];
} runq;

void runq_init(runq *q);

/* Appends at the tail. Returns false when the ring is full; then the
 * owner moves half of it out with runq_take_half and retries. */
bool runq_push(runq *q, void *item);

/* Puts item in the LIFO slot; returns what was there (NULL if empty), for
 * the owner to runq_push. */
void *runq_push_next(runq *q, void *item);

/* The LIFO slot first (unless skip_next), then the oldest entry. */
void *runq_pop(runq *q, bool skip_next);

/* Moves up to half of the ring (at least one entry when non-empty) into
 * out[], oldest first; returns how many. Owner only (used for overflow
 * and to hand work off before the owner blocks). out has RUNQ_SIZE/2+1
 * places. */
uint32_t runq_take_half(runq *q, void **out);

/* Takes the LIFO slot (owner only). */
void *runq_take_next(runq *q);

/* Steals about half of victim's ring into thief's (which the calling
 * thief owns and which must be empty) and returns one of the stolen
 * entries to run now, or NULL if there was nothing to steal. */
void *runq_steal(runq *thief, runq *victim);

/* Whether the ring (not the LIFO slot) may hold entries to steal. */
bool runq_maybe_nonempty(runq *q);

#endif
