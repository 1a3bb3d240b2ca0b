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
 * given by the deadline's digit at that level; except that level 0 also
 * takes the next block of 64 ticks, level 1 the next block of 4,096 and
 * level 2 the next block of 262,144 (each block's parity picks its
 * parts), see "moving the next blocks' timers down" below.
 * Consequences:
 *   - at level L > 2 the deadline's digit is above now's digit, so the
 *     search for the next slot never wraps around (levels 0-2 search
 *     now's block from now's digit on, then the next block's half);
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

#define BLOCK1_BITS (2 * WHEEL_LEVEL_BITS) /* level 1 spans 4,096 ticks */
#define BLOCK2_BITS (3 * WHEEL_LEVEL_BITS) /* level 2 spans 262,144 ticks */
#define TWO_BLOCK_LEVELS 3u                /* levels 0-2 hold now's block and the next */

/* deadline >= now. Levels 0, 1 and 2 take now's block (of 64, 4,096 and
 * 262,144 ticks) and the next. */
static inline unsigned level_for(uint64_t now, uint64_t deadline)
{
    if ((deadline >> WHEEL_LEVEL_BITS) <= (now >> WHEEL_LEVEL_BITS) + 1)
        return 0;
    if ((deadline >> BLOCK1_BITS) <= (now >> BLOCK1_BITS) + 1)
        return 1;
    if ((deadline >> BLOCK2_BITS) <= (now >> BLOCK2_BITS) + 1)
        return 2;
    unsigned significant = 63u - (unsigned)__builtin_clzll(now ^ deadline); /* a bit >= 18 differs */
    return significant / WHEEL_LEVEL_BITS;
}

static inline unsigned slot_for(uint64_t deadline, unsigned level)
{
    return (unsigned)(deadline >> (level * WHEEL_LEVEL_BITS)) & (WHEEL_SLOTS - 1);
}

/* The part of a slot: the top bits of the next lower digit; at level 0
 * the parity of the deadline's 64-tick block; at levels 1 and 2 that
 * digit plus 64 times the parity of its block (4,096 or 262,144 ticks). */
static inline unsigned part_for(uint64_t deadline, unsigned level)
{
    if (level == 0)
        return (unsigned)(deadline >> WHEEL_LEVEL_BITS) & 1;
    unsigned sub = (unsigned)(deadline >> (level * WHEEL_LEVEL_BITS - WHEEL_SUB_BITS)) & (WHEEL_SUBS - 1);
    if (level < TWO_BLOCK_LEVELS)
        sub |= ((unsigned)(deadline >> ((level + 1) * WHEEL_LEVEL_BITS)) & 1) << WHEEL_SUB_BITS;
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
    unsigned block_bits = shift + WHEEL_LEVEL_BITS;
    unsigned cur = (unsigned)(w->now >> block_bits) & 1;
    unsigned now_digit = (unsigned)(w->now >> shift) & (WHEEL_SLOTS - 1);
    uint64_t block = w->now & ~((UINT64_C(1) << block_bits) - 1);
    uint64_t here = w->occupied_by_parity[l][cur] & (~UINT64_C(0) << now_digit);
    unsigned par = cur;
    if (here == 0) {
        here = w->occupied_by_parity[l][cur ^ 1];
        par = cur ^ 1;
        block += UINT64_C(1) << block_bits;
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
 * 262,144-tick boundary (gsbench timers age_ms=...). So levels 0, 1 and 2
 * also take the block after now's (64, 4,096 and 262,144 ticks), and the
 * timers of higher levels due in those blocks are moved down while the
 * clock is still in the block before: PRECASCADE_STEP timers per advance,
 * between firings, with wheel_next_tick asking for an advance at once
 * until none is left. Sources, in the order taken: the level-3 slot and
 * the level-4 part of the next 262,144-tick block (into level 2), the
 * level-2 slot of the next 4,096-tick block (into level 1), and the
 * level-2 part of the next 64-tick block (into level 0; empty unless the
 * others were not done in time). Parts of levels 5 and up still cascade
 * when due: timers armed over 4.6 hours ahead, at 16.7 M-tick boundaries
 * (every 4.6 hours) or rarer. */

#define PRECASCADE_STEP 256u

/* The head of (level, slot, part) if it holds a timer due in the block
 * of `block_bits` bits that starts at `block`, else NULL. Every timer of
 * such a list is due in that block (the slot and part are its digits, and
 * a timer at a level agrees with now above that level's digit); the first
 * one is checked all the same, so that a broken invariant shows as a
 * late cascade, not as a thread told forever that there is work now. */
static wheel_timer *due_in_block(const wheel *w, unsigned level, unsigned slot, unsigned part, uint64_t block,
                                 unsigned block_bits)
{
    if (!part_set(w, level, slot, part))
        return NULL;
    wheel_timer *head = (wheel_timer *)&w->heads[level][slot][part];
    return (head->next->deadline >> block_bits) == (block >> block_bits) ? head : NULL;
}

/* The first non-empty part of (level, slot) among those of block parity
 * `par` (levels 1 and 2: the parts of one block), or of any (others). */
static bool first_part(const wheel *w, unsigned level, unsigned slot, unsigned par, unsigned *part)
{
    uint64_t bits = level < TWO_BLOCK_LEVELS ? w->parts[level][slot][par] : w->parts[level][slot][0];
    if (bits == 0)
        return false;
    *part = (unsigned)__builtin_ctzll(bits) | (level < TWO_BLOCK_LEVELS ? par << WHEEL_SUB_BITS : 0);
    return true;
}

/* A list holding timers that may move down now, or NULL. */
static wheel_timer *precascade_source(const wheel *w)
{
    wheel_timer *head;
    unsigned part;
    uint64_t next2 = ((w->now >> BLOCK2_BITS) + 1) << BLOCK2_BITS; /* next 262,144-tick block */
    unsigned s3 = slot_for(next2, 3);
    if (first_part(w, 3, s3, 0, &part) && (head = due_in_block(w, 3, s3, part, next2, BLOCK2_BITS)) != NULL)
        return head;
    if ((head = due_in_block(w, 4, slot_for(next2, 4), part_for(next2, 4), next2, BLOCK2_BITS)) != NULL)
        return head;
    uint64_t next1 = ((w->now >> BLOCK1_BITS) + 1) << BLOCK1_BITS; /* next 4,096-tick block */
    unsigned s2 = slot_for(next1, 2), par1 = (unsigned)(next1 >> BLOCK2_BITS) & 1;
    if (first_part(w, 2, s2, par1, &part) && (head = due_in_block(w, 2, s2, part, next1, BLOCK1_BITS)) != NULL)
        return head;
    uint64_t next0 = (w->now | (WHEEL_SLOTS - 1)) + 1; /* next 64-tick block */
    return due_in_block(w, 2, slot_for(next0, 2), part_for(next0, 2), next0, WHEEL_LEVEL_BITS);
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

uint64_t wheel_next_tick(const wheel *w)
{
    if (precascade_source(w) != NULL)
        return w->now; /* timers to move down: work now */
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
