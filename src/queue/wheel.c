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
 * given by the deadline's digit at that level; except that level 0 takes
 * the next block of 64 ticks too (as its second part: the block's
 * parity), see "moving the next block's level-2 part down" below.
 * Consequences:
 *   - at level L > 0 the deadline's digit is above now's digit, so the
 *     search for the next slot never wraps around;
 *   - a level-0 slot part holds timers of exactly one tick.
 * When the clock reaches an occupied slot at level L > 0 its timers are
 * re-inserted relative to the new now (cascading): each lands in a lower
 * level, and fires exactly at its tick. A timer is cascaded at most once
 * per level, so the amortised cost stays O(levels). Occupancy bitmaps make
 * the next-slot search one mask and one count-trailing-zeros per level.
 *
 * Slots above level 0 are split into WHEEL_SUBS parts by the deadline's
 * next lower digit, and each part comes due when the clock reaches *its*
 * start, not the slot's: with a million timers a level-1 slot holds tens
 * of thousands, each a cache miss away, and cascading them all at once
 * held every other timer up for 6 ms (W7). With 64 parts a level-1 part
 * holds the timers of one tick, which fire straight from it, and a part
 * of level L > 1 cascades 64^(L-1) ticks' worth. (With 8 parts, W7's
 * level-1 cascades still held deliveries up for 0.5 ms every 8 ms, which
 * was its p99 after the set-up: 0.79 ms, against 0.22 ms with 64.)
 * So the slot of `now`'s own digit may still hold parts not yet due at
 * levels above 0, and the next work is the earliest start over all
 * levels, not simply the lowest occupied level.
 * Rejected: Linux's non-cascading wheel (timers of the outer levels fire
 * up to 1/8 of their range late: fine for network timeouts, not for
 * "no more than one tick late"); a binary heap (O(log n) insert/cancel
 * and poor locality with a million timers).
 */
#include "wheel.h"

#include <stddef.h>
#include <sys/mman.h>

/* deadline >= now. Level 0 takes now's block of 64 ticks and the next. */
static inline unsigned level_for(uint64_t now, uint64_t deadline)
{
    if ((deadline >> WHEEL_LEVEL_BITS) <= (now >> WHEEL_LEVEL_BITS) + 1)
        return 0;
    unsigned significant = 63u - (unsigned)__builtin_clzll(now ^ deadline); /* a bit >= 6 differs */
    return significant / WHEEL_LEVEL_BITS;
}

static inline unsigned slot_for(uint64_t deadline, unsigned level)
{
    return (unsigned)(deadline >> (level * WHEEL_LEVEL_BITS)) & (WHEEL_SLOTS - 1);
}

/* The part of a slot: the top bits of the next lower digit; at level 0
 * the parity of the deadline's block (now's block or the next). */
static inline unsigned part_for(uint64_t deadline, unsigned level)
{
    if (level == 0)
        return (unsigned)(deadline >> WHEEL_LEVEL_BITS) & 1;
    return (unsigned)(deadline >> (level * WHEEL_LEVEL_BITS - WHEEL_SUB_BITS)) & (WHEEL_SUBS - 1);
}

wheel *wheel_new(uint64_t now)
{
    /* Mapped rather than allocated: fresh anonymous pages read as zero
     * without being touched, and a zero head is an empty list (link_timer
     * makes it circular when it first gets a timer), so only the pages of
     * heads ever used become resident. calloc would not promise that
     * (from the heap it clears what it hands out). */
    wheel *w = mmap(NULL, sizeof *w, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED)
        return NULL;
    w->now = now;
    return w;
}

void wheel_free(wheel *w)
{
    if (w != NULL)
        munmap(w, sizeof *w);
}

static void link_timer(wheel *w, wheel_timer *t)
{
    uint64_t at = t->deadline > w->now ? t->deadline : w->now; /* past: the current tick */
    unsigned level = level_for(w->now, at);
    unsigned slot = slot_for(at, level);
    unsigned part = part_for(at, level);
    wheel_timer *head = &w->heads[level][slot][part];
    if (head->next == NULL) /* never used yet: make it an empty circle */
        head->prev = head->next = head;
    t->level = (uint8_t)level;
    t->slot = (uint8_t)slot;
    t->sub = (uint8_t)part;
    t->prev = head->prev; /* append */
    t->next = head;
    head->prev->next = t;
    head->prev = t;
    w->parts[level][slot] |= UINT64_C(1) << part;
    w->occupied[level] |= UINT64_C(1) << slot;
    if (level == 0)
        w->occupied0[part] |= UINT64_C(1) << slot;
}

/* Marks the list of (level, slot, part) empty. */
static void mark_empty(wheel *w, unsigned level, unsigned slot, unsigned part)
{
    w->parts[level][slot] &= ~(UINT64_C(1) << part);
    if (w->parts[level][slot] == 0)
        w->occupied[level] &= ~(UINT64_C(1) << slot);
    if (level == 0)
        w->occupied0[part] &= ~(UINT64_C(1) << slot);
}

static void unlink_timer(wheel *w, wheel_timer *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    wheel_timer *head = &w->heads[t->level][t->slot][t->sub];
    if (head->next == head)
        mark_empty(w, t->level, t->slot, t->sub);
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

typedef struct place {
    unsigned level, slot, part;
    uint64_t tick; /* when the list comes due (fires or cascades) */
} place;

/* Level 0's first occupied slot: in now's block at or after now, else in
 * the next block. */
static bool level0_next(const wheel *w, place *out)
{
    unsigned cur = (unsigned)(w->now >> WHEEL_LEVEL_BITS) & 1;
    unsigned now_digit = (unsigned)w->now & (WHEEL_SLOTS - 1);
    uint64_t block = w->now & ~(uint64_t)(WHEEL_SLOTS - 1);
    uint64_t here = w->occupied0[cur] & (~UINT64_C(0) << now_digit);
    if (here != 0) {
        unsigned slot = (unsigned)__builtin_ctzll(here);
        *out = (place){0, slot, cur, block + slot};
        return true;
    }
    if (w->occupied0[cur ^ 1] != 0) {
        unsigned slot = (unsigned)__builtin_ctzll(w->occupied0[cur ^ 1]);
        *out = (place){0, slot, cur ^ 1, block + WHEEL_SLOTS + slot};
        return true;
    }
    return false;
}

/* The first occupied list of one level at or after now, and its tick. */
static bool level_next(const wheel *w, unsigned l, place *out)
{
    if (l == 0)
        return level0_next(w, out);
    if (w->occupied[l] == 0)
        return false;
    unsigned shift = l * WHEEL_LEVEL_BITS;
    unsigned now_digit = (unsigned)(w->now >> shift) & (WHEEL_SLOTS - 1);
    uint64_t candidates = w->occupied[l] & (~UINT64_C(0) << now_digit);
    if (candidates == 0)
        return false; /* cannot happen by construction; be safe */
    unsigned slot = (unsigned)__builtin_ctzll(candidates);
    unsigned part = (unsigned)__builtin_ctzll(w->parts[l][slot]);
    /* now with digits 0..l cleared, plus slot at digit l, plus the part */
    uint64_t span = shift + WHEEL_LEVEL_BITS >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << (shift + WHEEL_LEVEL_BITS)) - 1;
    uint64_t tick = (w->now & ~span) | ((uint64_t)slot << shift);
    tick += (uint64_t)part << (shift - WHEEL_SUB_BITS);
    if (tick < w->now)
        tick = w->now; /* a part of now's own slot, due already */
    *out = (place){l, slot, part, tick};
    return true;
}

/* ---- moving the next block's level-2 part down ahead of time ----------
 * A level-2 part holds 64 ticks' worth of timers and comes due at the
 * start of its block; cascading it then (in a runtime past its first 4 s,
 * with W7's load: some 30,000 cold timers) held everything due meanwhile
 * up by 4-5 ms. Level 0 also takes the next block, so while the clock is
 * in the block before, the part is moved down PRECASCADE_STEP timers per
 * advance, between firings, and wheel_next_tick asks for an advance now
 * until it is done. (Parts of levels 3 and up still cascade when due:
 * they come every 4,096 ticks or more, for timers armed over 4 s ahead.) */

#define PRECASCADE_STEP 256u

/* The list of the level-2 part due at the start of the next block, if
 * it holds timers to move. Every timer of it is due in that block (a
 * level-2 timer agrees with now above digit 2, and this slot and part are
 * the next block's digits); the first one is checked all the same, so
 * that a broken invariant shows as a late cascade, not as a thread told
 * forever that there is work now. */
static wheel_timer *next_block_part(const wheel *w)
{
    uint64_t next = (w->now | (WHEEL_SLOTS - 1)) + 1;
    unsigned slot = slot_for(next, 2), part = part_for(next, 2);
    if (!((w->parts[2][slot] >> part) & 1))
        return NULL;
    wheel_timer *head = (wheel_timer *)&w->heads[2][slot][part];
    if ((head->next->deadline >> WHEEL_LEVEL_BITS) != (next >> WHEEL_LEVEL_BITS))
        return NULL;
    return head;
}

static void precascade(wheel *w)
{
    wheel_timer *head = next_block_part(w);
    if (head == NULL)
        return;
    uint64_t next_block = (w->now >> WHEEL_LEVEL_BITS) + 1;
    for (unsigned moved = 0; moved < PRECASCADE_STEP && head->next != head; moved++) {
        wheel_timer *t = head->next;
        if ((t->deadline >> WHEEL_LEVEL_BITS) != next_block)
            return; /* see next_block_part */
        unlink_timer(w, t);
        link_timer(w, t); /* level 0, the next block's half */
    }
}

/* The list that comes due first over all levels (levels above 0 may
 * hold parts of now's own slot, due before later level-0 slots). From
 * `from` up only. On a tie the lower level wins: either order is right. */
static bool next_place(const wheel *w, unsigned from, place *out)
{
    bool found = false;
    for (unsigned l = from; l < WHEEL_LEVELS; l++) {
        place p = {0, 0, 0, 0};
        if (level_next(w, l, &p) && (!found || p.tick < out->tick)) {
            *out = p;
            found = true;
        }
    }
    return found;
}

uint64_t wheel_next_tick(const wheel *w)
{
    if (next_block_part(w) != NULL)
        return w->now; /* a part to move down: work now */
    place p = {0, 0, 0, 0};
    return next_place(w, 0, &p) ? p.tick : UINT64_MAX;
}

uint64_t wheel_advance(wheel *w, uint64_t now, wheel_fire_fn fire, void *ctx)
{
    uint64_t fired = 0;
    place p = {0, 0, 0, 0};
    while (next_place(w, 0, &p) && p.tick <= now) {
        w->now = p.tick;
        /* Detach the whole list first: fire() may insert into it again. */
        wheel_timer *head = &w->heads[p.level][p.slot][p.part];
        wheel_timer *first = head->next, *last = head->prev;
        head->next = head->prev = head;
        mark_empty(w, p.level, p.slot, p.part);
        last->next = NULL;
        for (wheel_timer *t = first, *next; t != NULL; t = next) {
            next = t->next;
            if (t->deadline <= p.tick) {
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
    precascade(w);
    return fired;
}
