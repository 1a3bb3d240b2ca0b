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
/* The timer thread, for each timer it fires. */
void lateness_note(timer_lateness *l, uint64_t deadline_ns);
/* The bucket of a lateness (exposed for the unit test). */
unsigned lateness_bucket(uint64_t late_ns);

#endif
