/* wheel.h - hierarchical timer wheel with an injected clock.
 *
 * Single-threaded: one owner inserts, removes and advances (in the runtime,
 * the timer thread). Timers are intrusive; insert and remove are O(1); the
 * next-deadline query is a few bit operations per level. Time is in ticks
 * (the runtime uses 1 ms ticks); the wheel never reads a clock itself.
 */
#ifndef GS_QUEUE_WHEEL_H
#define GS_QUEUE_WHEEL_H

#include <stdbool.h>
#include <stdint.h>

#define WHEEL_LEVEL_BITS 6
#define WHEEL_SLOTS (1u << WHEEL_LEVEL_BITS) /* 64 slots per level */
#define WHEEL_LEVELS 11                      /* 66 bits: every uint64_t deadline has a level */
#define WHEEL_SUB_BITS 6
#define WHEEL_SUBS (1u << WHEEL_SUB_BITS) /* parts of a slot above level 1, cascaded one at a time */
#define WHEEL_PARTS (2 * WHEEL_SUBS)      /* levels 1-9: their parts in now's block and the next */
#define WHEEL_TWO_BLOCK_LEVELS (WHEEL_LEVELS - 1) /* levels 0-9 hold now's block and the next */

typedef struct wheel_timer {
    struct wheel_timer *prev, *next; /* in a slot part's list (circular, through its head) */
    uint64_t deadline;               /* in ticks */
    uint8_t level, slot, sub;
} wheel_timer;

typedef struct wheel {
    uint64_t now;                              /* current tick: everything <= now has fired */
    uint64_t occupied[WHEEL_LEVELS];           /* bit s set: slot s of the level is non-empty */
    /* levels 0 to 9 by the parity of their block (now's or the next):
     * bit s set: slot s holds timers of that block */
    uint64_t occupied_by_parity[WHEEL_TWO_BLOCK_LEVELS][2];
    uint64_t parts[WHEEL_LEVELS][WHEEL_SLOTS][2]; /* bit p of word p / 64 set: part p is non-empty */
    /* list sentinels (level 0: parts 0-1; levels 1-9: 0-127; level 10: 0-63);
     * all zero (NULL links) until first used, which means empty */
    wheel_timer heads[WHEEL_LEVELS][WHEEL_SLOTS][WHEEL_PARTS];
    uint64_t count;
    /* Timers moved down a level when their list came due rather than
     * ahead of time: each such list held up the firings behind it. Zero
     * while the clock is advanced as wheel_next_tick asks (tests check
     * it); a clock that jumps far makes some. */
    uint64_t cascaded_when_due;
} wheel;

typedef void (*wheel_fire_fn)(wheel_timer *t, void *ctx);

/* A wheel at tick `now`, or NULL if out of memory. Its list heads are
 * mapped zero pages, made up when first used: an idle wheel costs a few
 * pages, not its 2.9 MiB. */
wheel *wheel_new(uint64_t now);
void wheel_free(wheel *w);

/* Schedules t at `deadline`. A deadline <= now is due at the current tick
 * (it fires at the next advance, ordered as if its deadline were now). */
void wheel_insert(wheel *w, wheel_timer *t, uint64_t deadline);

/* Unschedules a timer that is in the wheel (inserted and not yet fired). */
void wheel_remove(wheel *w, wheel_timer *t);

/* A tick at or before the earliest deadline, at which wheel_advance will
 * have work (for far-away timers it may be moving them down a level
 * ahead of time, not a firing: an owner that sleeps until this tick and
 * then advances keeps every list from cascading when due); UINT64_MAX
 * when the wheel is empty. */
uint64_t wheel_next_tick(const wheel *w);

/* Moves the clock to `now` (never backwards) and calls fire for every
 * timer whose deadline is <= now, in deadline order (equal deadlines in
 * no particular order). fire may insert timers but must not remove any.
 * Returns how many fired. */
uint64_t wheel_advance(wheel *w, uint64_t now, wheel_fire_fn fire, void *ctx);

#endif
