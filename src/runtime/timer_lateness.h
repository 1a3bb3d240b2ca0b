/* timer_lateness.h - how late the timer thread fires timers: the
 * histogram behind gs_timer_lateness_get. See timer_lateness.c.
 */
#ifndef GS_RUNTIME_TIMER_LATENESS_H
#define GS_RUNTIME_TIMER_LATENESS_H

#include <stdatomic.h>
#include <stdint.h>

#include "genserver.h"

typedef struct timer_lateness {
    /* Written by the timer thread only, read by anyone (relaxed: each is
     * a lone counter; gs_timer_lateness_get promises no consistency
     * between them). */
    _Atomic uint64_t max_ns;
    _Atomic uint64_t buckets[GS_LATENESS_BUCKETS];
    /* The timer thread's clock for the notes (see lateness_round). */
    uint64_t clock_ns;
    uint32_t notes_since_read;
} timer_lateness;

void lateness_init(timer_lateness *l);
/* The timer thread, at the start of a firing round: now_ns is its clock. */
void lateness_round(timer_lateness *l, uint64_t now_ns);
#define LATENESS_FIRST_SHIFT 10 /* buckets[0]: under 2^10 ns */
#define LATENESS_SUB_BITS 3     /* 2^LATENESS_SUB_BITS buckets per power of two */
#define LATENESS_CLOCK_EVERY 32 /* notes between two clock reads within a round */

/* The bucket of a lateness. */
static inline unsigned lateness_bucket(uint64_t late_ns)
{
    if (late_ns < (UINT64_C(1) << LATENESS_FIRST_SHIFT))
        return 0;
    unsigned e = 63u - (unsigned)__builtin_clzll(late_ns); /* the leading one: e >= LATENESS_FIRST_SHIFT */
    unsigned sub = (unsigned)(late_ns >> (e - LATENESS_SUB_BITS)) & ((1u << LATENESS_SUB_BITS) - 1);
    unsigned b = 1 + ((e - LATENESS_FIRST_SHIFT) << LATENESS_SUB_BITS) + sub;
    return b < GS_LATENESS_BUCKETS ? b : GS_LATENESS_BUCKETS - 1;
}

/* Reads the clock again (every LATENESS_CLOCK_EVERY notes of a round). */
void lateness_clock_again(timer_lateness *l);

/* The timer thread, for each timer it fires: inline, a dozen instructions
 * on the firing path. Single writer: a relaxed load and store instead of
 * a read-modify-write. A timer fires once the round's clock has passed
 * its deadline, so the difference is not negative; the test is for a
 * deadline clock a little ahead of now_ns (deadline_clock.c). */
static inline void lateness_note(timer_lateness *l, uint64_t deadline_ns)
{
    if (++l->notes_since_read == LATENESS_CLOCK_EVERY)
        lateness_clock_again(l);
    uint64_t late = l->clock_ns > deadline_ns ? l->clock_ns - deadline_ns : 0;
    _Atomic uint64_t *c = &l->buckets[lateness_bucket(late)];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
    if (late > atomic_load_explicit(&l->max_ns, memory_order_relaxed))
        atomic_store_explicit(&l->max_ns, late, memory_order_relaxed);
}

#endif
