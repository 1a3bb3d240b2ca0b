/* wheel.c - the hierarchical timer wheel behind every timeout.
 *
 * Problem: a million pending timers must cost memory only, insert and
 * cancel must be O(1), the owner must learn the next deadline cheaply (it
 * sleeps until then), and no timer may fire early or more than one tick
 * late.
 *
 * Design: WHEEL_LEVELS levels of 64 slots; level L has a granularity of
 * 64^L ticks. A timer goes to the level of the highest 6-bit digit in
 * which its deadline differs from `now` (deadline XOR now), into the slot
 * given by the deadline's digit at that level. Consequences:
 *   - every timer of level L is due after everything of levels < L (their
 *     deadlines differ from now only in lower digits), so the earliest
 *     occupied slot of the lowest non-empty level holds the next work;
 *   - at level L > 0 the deadline's digit is above now's digit, so the
 *     search for the next slot never wraps around;
 *   - a level-0 slot holds timers of exactly one tick.
 * When the clock reaches the start of an occupied slot at level L > 0 the
 * slot is emptied and its timers are re-inserted relative to the new now
 * (cascading): each lands in a lower level, and fires exactly at its tick.
 * A timer is cascaded at most once per level, so the amortised cost stays
 * O(levels). Occupancy bitmaps make the next-slot search one mask and one
 * count-trailing-zeros per level.
 * Rejected: Linux's non-cascading wheel (timers of the outer levels fire
 * up to 1/8 of their range late: fine for network timeouts, not for
 * "no more than one tick late"); a binary heap (O(log n) insert/cancel
 * and poor locality with a million timers).
 */
#include "wheel.h"

#include <stddef.h>

static inline unsigned level_for(uint64_t now, uint64_t deadline)
{
    /* | (WHEEL_SLOTS - 1): deadlines within now's level-0 range use level 0. */
    uint64_t masked = (now ^ deadline) | (WHEEL_SLOTS - 1);
    unsigned significant = 63u - (unsigned)__builtin_clzll(masked);
    return significant / WHEEL_LEVEL_BITS;
}

static inline unsigned slot_for(uint64_t deadline, unsigned level)
{
    return (unsigned)(deadline >> (level * WHEEL_LEVEL_BITS)) & (WHEEL_SLOTS - 1);
}

void wheel_init(wheel *w, uint64_t now)
{
    w->now = now;
    w->count = 0;
    for (unsigned l = 0; l < WHEEL_LEVELS; l++) {
        w->occupied[l] = 0;
        for (unsigned s = 0; s < WHEEL_SLOTS; s++) {
            w->heads[l][s].prev = &w->heads[l][s];
            w->heads[l][s].next = &w->heads[l][s];
        }
    }
}

static void link_timer(wheel *w, wheel_timer *t)
{
    uint64_t at = t->deadline > w->now ? t->deadline : w->now; /* past: the current tick */
    unsigned level = level_for(w->now, at);
    unsigned slot = slot_for(at, level);
    wheel_timer *head = &w->heads[level][slot];
    t->level = (uint8_t)level;
    t->slot = (uint8_t)slot;
    t->prev = head->prev; /* append: equal deadlines fire in insertion order */
    t->next = head;
    head->prev->next = t;
    head->prev = t;
    w->occupied[level] |= UINT64_C(1) << slot;
}

static void unlink_timer(wheel *w, wheel_timer *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    wheel_timer *head = &w->heads[t->level][t->slot];
    if (head->next == head)
        w->occupied[t->level] &= ~(UINT64_C(1) << t->slot);
    t->prev = t->next = NULL;
}

void wheel_insert(wheel *w, wheel_timer *t, uint64_t deadline)
{
    t->deadline = deadline;
    link_timer(w, t);
    w->count++;
}

void wheel_remove(wheel *w, wheel_timer *t)
{
    unlink_timer(w, t);
    w->count--;
}

/* The start tick of the next occupied slot, and where it is. */
static bool next_slot(const wheel *w, unsigned *level_out, unsigned *slot_out, uint64_t *tick_out)
{
    for (unsigned l = 0; l < WHEEL_LEVELS; l++) {
        if (w->occupied[l] == 0)
            continue;
        unsigned shift = l * WHEEL_LEVEL_BITS;
        unsigned now_digit = (unsigned)(w->now >> shift) & (WHEEL_SLOTS - 1);
        uint64_t candidates = w->occupied[l] & (~UINT64_C(0) << now_digit);
        if (candidates == 0)
            continue; /* cannot happen by construction; be safe */
        unsigned slot = (unsigned)__builtin_ctzll(candidates);
        /* now with digits 0..l cleared, plus slot at digit l */
        uint64_t span = shift + WHEEL_LEVEL_BITS >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << (shift + WHEEL_LEVEL_BITS)) - 1;
        uint64_t tick = (w->now & ~span) | ((uint64_t)slot << shift);
        if (tick < w->now)
            tick = w->now; /* level 0, current slot */
        *level_out = l;
        *slot_out = slot;
        *tick_out = tick;
        return true;
    }
    return false;
}

uint64_t wheel_next_tick(const wheel *w)
{
    unsigned l, s;
    uint64_t tick;
    return next_slot(w, &l, &s, &tick) ? tick : UINT64_MAX;
}

uint64_t wheel_advance(wheel *w, uint64_t now, wheel_fire_fn fire, void *ctx)
{
    uint64_t fired = 0;
    unsigned level, slot;
    uint64_t tick;
    while (next_slot(w, &level, &slot, &tick) && tick <= now) {
        w->now = tick;
        /* Detach the whole slot first: fire() may insert into it again. */
        wheel_timer *head = &w->heads[level][slot];
        wheel_timer *first = head->next, *last = head->prev;
        head->next = head->prev = head;
        w->occupied[level] &= ~(UINT64_C(1) << slot);
        last->next = NULL;
        for (wheel_timer *t = first, *next; t != NULL; t = next) {
            next = t->next;
            if (t->deadline <= tick) {
                t->prev = t->next = NULL;
                w->count--;
                fired++;
                fire(t, ctx);
            } else {
                link_timer(w, t); /* cascade to a lower level */
            }
        }
    }
    if (now > w->now)
        w->now = now;
    return fired;
}
