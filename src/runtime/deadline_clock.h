/* deadline_clock.h - a cheap clock for computing deadlines.
 * See deadline_clock.c for the design.
 */
#ifndef GS_RUNTIME_DEADLINE_CLOCK_H
#define GS_RUNTIME_DEADLINE_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ns, or up to a few microseconds *later*, never
 * earlier: a deadline computed from it is never early. Any thread. */
uint64_t deadline_clock_ns(void);

#endif
