/* wheel.c - the hierarchical timer wheel behind every timeout.
 *
 * Problem: a million pending timers must cost memory only, insert and
 * cancel must be O(1), the owner must learn the next deadline cheaply (it
 * sleeps until then), and no timer may fire early or more than one tick
 * late.
 *
 * Design: WHEEL_LEVELS levels of 64 slots; level L has a granularity of
 * 64^L ticks. A timer goes to the lowest level L whose block (64^(L+1)
 * ticks, L's span) is now's block or the next one (each block's parity
 * picks its parts), into the slot given by the deadline's digit at that
 * level; see "moving the next blocks' timers down" below. The top level
 * (10, above 2^60 ticks) has one block only and takes what is further.
 * Consequences:
 *   - the search for the next slot of a level looks in now's block from
 *     now's digit on, then in the next block's half (at the top level the
 *     deadline's digit is above now's digit: no wrap-around either);
 *   - a level-0 part and a level-1 part hold timers of exactly one tick.
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

#define TWO_BLOCK_LEVELS WHEEL_TWO_BLOCK_LEVELS

/* The bits of a level's block: 64^(level+1) ticks. */
static inline unsigned block_bits(unsigned level)
{
    return (level + 1) * WHEEL_LEVEL_BITS;
}

/* deadline >= now: the lowest level whose block is now's or the next. */
static inline unsigned level_for(uint64_t now, uint64_t deadline)
{
    for (unsigned l = 0; l < TWO_BLOCK_LEVELS; l++)
        if ((deadline >> block_bits(l)) <= (now >> block_bits(l)) + 1)
            return l;
    return TWO_BLOCK_LEVELS; /* the top level: beyond the next 2^60-tick block */
}

static inline unsigned slot_for(uint64_t deadline, unsigned level)
{
    return (unsigned)(deadline >> (level * WHEEL_LEVEL_BITS)) & (WHEEL_SLOTS - 1);
}

/* The part of a slot: the top bits of the next lower digit; at level 0
 * the parity of the deadline's 64-tick block; at levels 1 to 9 that
 * digit plus 64 times the parity of the level's block. */
static inline unsigned part_for(uint64_t deadline, unsigned level)
{
    if (level == 0)
        return (unsigned)(deadline >> WHEEL_LEVEL_BITS) & 1;
    unsigned sub = (unsigned)(deadline >> (level * WHEEL_LEVEL_BITS - WHEEL_SUB_BITS)) & (WHEEL_SUBS - 1);
    if (level < TWO_BLOCK_LEVELS)
        sub |= ((unsigned)(deadline >> block_bits(level)) & 1) << WHEEL_SUB_BITS;
    return sub;
}

/* The block parity a part of a level below TWO_BLOCK_LEVELS belongs to. */
static inline unsigned parity_of(unsigned level, unsigned part)
{
    return level == 0 ? part : part >> WHEEL_SUB_BITS;
}

static inline bool part_set(const wheel *w, unsigned level, unsigned slot, unsigned part)
{
    return (w->parts[level][slot][part >> 6] >> (part & 63)) & 1;
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
    w->parts[level][slot][part >> 6] |= UINT64_C(1) << (part & 63);
    w->occupied[level] |= UINT64_C(1) << slot;
    if (level < TWO_BLOCK_LEVELS)
        w->occupied_by_parity[level][parity_of(level, part)] |= UINT64_C(1) << slot;
}

/* Whether slot `slot` of a level below TWO_BLOCK_LEVELS holds parts of
 * block parity `par`. */
static bool slot_has_parity(const wheel *w, unsigned level, unsigned slot, unsigned par)
{
    if (level == 0)
        return (w->parts[0][slot][0] >> par) & 1;
    return w->parts[level][slot][par] != 0;
}

/* Marks the list of (level, slot, part) empty. */
static void mark_empty(wheel *w, unsigned level, unsigned slot, unsigned part)
{
    w->parts[level][slot][part >> 6] &= ~(UINT64_C(1) << (part & 63));
    if (w->parts[level][slot][0] == 0 && w->parts[level][slot][1] == 0)
        w->occupied[level] &= ~(UINT64_C(1) << slot);
    if (level < TWO_BLOCK_LEVELS) {
        unsigned par = parity_of(level, part);
        if (!slot_has_parity(w, level, slot, par))
            w->occupied_by_parity[level][par] &= ~(UINT64_C(1) << slot);
    }
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

/* The first occupied list of a level below TWO_BLOCK_LEVELS: in now's
 * block at or after now, else in the next block. */
static bool two_block_next(const wheel *w, unsigned l, place *out)
{
    unsigned shift = l * WHEEL_LEVEL_BITS; /* of the slot digit */
    unsigned bits = block_bits(l);         /* at most 60 */
    unsigned cur = (unsigned)(w->now >> bits) & 1;
    unsigned now_digit = (unsigned)(w->now >> shift) & (WHEEL_SLOTS - 1);
    uint64_t block = w->now & ~((UINT64_C(1) << bits) - 1);
    uint64_t here = w->occupied_by_parity[l][cur] & (~UINT64_C(0) << now_digit);
    unsigned par = cur;
    if (here == 0) {
        here = w->occupied_by_parity[l][cur ^ 1];
        par = cur ^ 1;
        block += UINT64_C(1) << bits;
        if (here == 0)
            return false;
    }
    unsigned slot = (unsigned)__builtin_ctzll(here);
    unsigned part = par;
    uint64_t tick_in_slot = 0;
    if (l > 0) {
        unsigned sub = (unsigned)__builtin_ctzll(w->parts[l][slot][par]);
        part = sub | par << WHEEL_SUB_BITS;
        tick_in_slot = (uint64_t)sub << (shift - WHEEL_SUB_BITS);
    }
    uint64_t tick = block + ((uint64_t)slot << shift) + tick_in_slot;
    if (tick < w->now)
        tick = w->now; /* a part of now's own slot above level 0, due already */
    *out = (place){l, slot, part, tick};
    return true;
}

/* The first occupied list of one level at or after now, and its tick. */
static bool level_next(const wheel *w, unsigned l, place *out)
{
    if (l < TWO_BLOCK_LEVELS)
        return two_block_next(w, l, out);
    if (w->occupied[l] == 0)
        return false;
    unsigned shift = l * WHEEL_LEVEL_BITS;
    unsigned now_digit = (unsigned)(w->now >> shift) & (WHEEL_SLOTS - 1);
    uint64_t candidates = w->occupied[l] & (~UINT64_C(0) << now_digit);
    if (candidates == 0)
        return false; /* cannot happen by construction; be safe */
    unsigned slot = (unsigned)__builtin_ctzll(candidates);
    unsigned part = (unsigned)__builtin_ctzll(w->parts[l][slot][0]);
    /* now with digits 0..l cleared, plus slot at digit l, plus the part */
    uint64_t span = shift + WHEEL_LEVEL_BITS >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << (shift + WHEEL_LEVEL_BITS)) - 1;
    uint64_t tick = (w->now & ~span) | ((uint64_t)slot << shift);
    tick += (uint64_t)part << (shift - WHEEL_SUB_BITS);
    if (tick < w->now)
        tick = w->now; /* a part of now's own slot, due already */
    *out = (place){l, slot, part, tick};
    return true;
}

/* ---- moving the next blocks' timers down ahead of time ----------------
 * A part above level 1 holds 64^(L-1) ticks' worth of timers and comes
 * due at its start; cascading it then held everything due meanwhile up:
 * 4-5 ms for a level-2 part and 23 ms for a level-3 part in W7 in a
 * runtime old enough for its deadlines to cross a 4,096- or
 * 262,144-tick boundary (gsbench timers age_ms=...), and 5 ms for a
 * million timers in one level-5 part (the wheel alone) where deadlines
 * crossed a 2^30-tick boundary. So every level but the top also takes
 * the block after now's, and the timers due in a level's next block are
 * moved down into it while the clock is still in the block before:
 * PRECASCADE_STEP timers per advance, between firings, with
 * wheel_next_tick asking for an advance at once until none is left.
 * The next block of level L (64^(L+1) ticks) is one slot of level L+1,
 * which two-block levels leave holding only that block's timers; the
 * sources are taken nearest first (level 1's next 4,096-tick block from
 * a level-2 slot, then level 2's from a level-3 slot, and so on up to
 * level 9's from a level-10 slot), so a big far move never holds up a
 * near one. Each timer moves down at most once per level. A list still
 * holding timers when it comes due (the clock jumped, or the moves fell
 * behind) cascades then, counted in cascaded_when_due. Level 0's next
 * 64-tick block needs no move: level 1's parts hold one tick each and
 * fire in place; a level-2 part (64 ticks) of it, left over when level 1's
 * move fell behind, is moved first of all. */

#define PRECASCADE_STEP 256u

/* The head of (level, slot, part) if it holds a timer due in the block
 * of `bits` bits that starts at `block`, else NULL. Every timer of
 * such a list is due in that block (the slot and part are its digits, and
 * a timer at a level agrees with now above that level's digit); the first
 * one is checked all the same, so that a broken invariant shows as a
 * late cascade, not as a thread told forever that there is work now. */
static wheel_timer *due_in_block(const wheel *w, unsigned level, unsigned slot, unsigned part, uint64_t block,
                                 unsigned bits)
{
    if (!part_set(w, level, slot, part))
        return NULL;
    wheel_timer *head = (wheel_timer *)&w->heads[level][slot][part];
    return (head->next->deadline >> bits) == (block >> bits) ? head : NULL;
}

/* The first non-empty part of (level, slot) among those of block parity
 * `par` (two-block levels: the parts of one block), or of any (the top). */
static bool first_part(const wheel *w, unsigned level, unsigned slot, unsigned par, unsigned *part)
{
    uint64_t bits = level < TWO_BLOCK_LEVELS ? w->parts[level][slot][par] : w->parts[level][slot][0];
    if (bits == 0)
        return false;
    *part = (unsigned)__builtin_ctzll(bits) | (level < TWO_BLOCK_LEVELS ? par << WHEEL_SUB_BITS : 0);
    return true;
}

/* A list holding timers of level L's next block, in level L+1's slot for
 * that block, or NULL. */
static wheel_timer *next_block_source(const wheel *w, unsigned level)
{
    unsigned bits = block_bits(level), up = level + 1;
    uint64_t next = ((w->now >> bits) + 1) << bits;
    if (next == 0)
        return NULL; /* now is in the last such block of the clock's range */
    if (w->occupied[up] == 0)
        return NULL; /* the usual case above the first levels: one test */
    unsigned slot = slot_for(next, up), part;
    unsigned par = up < TWO_BLOCK_LEVELS ? (unsigned)(next >> block_bits(up)) & 1 : 0;
    if (!first_part(w, up, slot, par, &part))
        return NULL;
    return due_in_block(w, up, slot, part, next, bits);
}

/* A list holding timers that may move down now, or NULL. */
static wheel_timer *precascade_source(const wheel *w)
{
    uint64_t next0 = (w->now | (WHEEL_SLOTS - 1)) + 1; /* next 64-tick block */
    wheel_timer *head = due_in_block(w, 2, slot_for(next0, 2), part_for(next0, 2), next0, WHEEL_LEVEL_BITS);
    for (unsigned l = 1; head == NULL && l < TWO_BLOCK_LEVELS; l++)
        head = next_block_source(w, l);
    return head;
}

static void precascade(wheel *w)
{
    for (unsigned moved = 0; moved < PRECASCADE_STEP; moved++) {
        wheel_timer *head = precascade_source(w);
        if (head == NULL)
            return;
        wheel_timer *t = head->next;
        unlink_timer(w, t);
        link_timer(w, t); /* a level below, the next block's half */
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

/* When the clock must next come to list p, a level's first: for a list
 * above level 1 in a later slot than now's, as its slot's block becomes
 * the next block of the level below, so that it is moved down ahead of
 * time (precascade_source then finds it); for a level-2 part in now's
 * slot, the 64 ticks before it (the leftover move into level 0); else
 * when it comes due. Without this an idle thread slept until far timers
 * came due, and cascaded them whole then. */
static uint64_t visit_tick(const wheel *w, const place *p)
{
    if (p->level < 2)
        return p->tick; /* parts of one tick: they fire in place */
    unsigned shift = p->level * WHEEL_LEVEL_BITS; /* a slot of level L: the block of level L-1 */
    uint64_t slot_start = p->tick & ~((UINT64_C(1) << shift) - 1);
    uint64_t ahead;
    if (slot_start > w->now)
        ahead = slot_start - (UINT64_C(1) << shift);
    else if (p->level == 2)
        ahead = p->tick > WHEEL_SLOTS ? p->tick - WHEEL_SLOTS : 0;
    else
        return p->tick;
    return ahead > w->now ? ahead : w->now;
}

uint64_t wheel_next_tick(const wheel *w)
{
    if (precascade_source(w) != NULL)
        return w->now; /* timers to move down: work now */
    uint64_t next = UINT64_MAX;
    for (unsigned l = 0; l < WHEEL_LEVELS; l++) {
        place p = {0, 0, 0, 0};
        if (level_next(w, l, &p)) {
            uint64_t t = visit_tick(w, &p);
            if (t < next)
                next = t;
        }
    }
    return next;
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
                w->cascaded_when_due++;
            }
        }
    }
    if (now > w->now)
        w->now = now;
    precascade(w);
    return fired;
}
