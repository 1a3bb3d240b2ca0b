/* The timer wheel against a simple sorted reference: a million random
 * insert / cancel / advance steps with a deterministic clock must give the
 * same firing set, at the same ticks, in deadline order. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "queue/wheel.h"

#define NTIMERS 4096

typedef struct test_timer {
    wheel_timer wt; /* first: fire() casts back */
    int id;
    bool pending;
    uint64_t deadline;
} test_timer;

typedef struct firing {
    int id;
    uint64_t deadline;
    uint64_t at; /* the `now` passed to the advance that fired it */
} firing;

typedef struct fire_log {
    firing *items;
    size_t count, cap;
    uint64_t advancing_to;
    uint64_t last_deadline;
    bool out_of_order;
} fire_log;

static void log_fire(wheel_timer *t, void *ctx)
{
    fire_log *log = ctx;
    test_timer *tt = (test_timer *)t;
    if (log->count == log->cap) {
        log->cap = log->cap ? log->cap * 2 : 1024;
        log->items = realloc(log->items, log->cap * sizeof(firing));
    }
    if (tt->deadline < log->last_deadline)
        log->out_of_order = true;
    log->last_deadline = tt->deadline;
    log->items[log->count++] = (firing){tt->id, tt->deadline, log->advancing_to};
    tt->pending = false;
}

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Reference: the pending timers, scanned linearly (slow but obviously right). */
static int cmp_firing(const void *a, const void *b)
{
    const firing *x = a, *y = b;
    if (x->deadline != y->deadline)
        return x->deadline < y->deadline ? -1 : 1;
    return x->id - y->id;
}

Test(wheel, matches_sorted_reference_over_a_million_steps, .timeout = 120)
{
    static test_timer timers[NTIMERS];
    uint64_t now = 1000000007ull; /* not aligned to any level */
    wheel *w = wheel_new(now);
    cr_assert_not_null(w);
    for (int i = 0; i < NTIMERS; i++)
        timers[i] = (test_timer){.id = i};
    fire_log log = {0};
    firing *expected = malloc(NTIMERS * sizeof(firing));
    size_t steps = 0, fired_total = 0, cancelled = 0;
    while (steps < 1000000) {
        steps++;
        uint64_t r = rnd();
        int id = (int)(r % NTIMERS);
        test_timer *t = &timers[id];
        unsigned op = (unsigned)(r >> 32) % 100;
        if (op < 55) {
            if (t->pending)
                continue;
            /* spread: mostly near, some far (up to 2^34 ticks), some in the past */
            uint64_t span = (op < 30) ? 64 : (op < 45) ? 5000 : (op < 52) ? 300000 : (UINT64_C(1) << 34);
            uint64_t deadline = now + (rnd() % span);
            if (op == 54)
                deadline = now - (rnd() % 10);
            /* A deadline in the past is due at the current tick: that is
             * its place in the order. */
            t->deadline = deadline > now ? deadline : now;
            t->pending = true;
            wheel_insert(w, &t->wt, deadline);
        } else if (op < 75) {
            if (!t->pending)
                continue;
            wheel_remove(w, &t->wt);
            t->pending = false;
            cancelled++;
        } else {
            uint64_t to = now + (rnd() % ((op < 97) ? 50 : 200000));
            /* reference: every pending timer with deadline <= to, sorted */
            size_t n = 0;
            for (int i = 0; i < NTIMERS; i++)
                if (timers[i].pending && timers[i].deadline <= to)
                    expected[n++] = (firing){i, timers[i].deadline, to};
            if (n > 0)
                qsort(expected, n, sizeof(firing), cmp_firing);
            /* the next-tick query never lies: nothing is due before it */
            uint64_t next = wheel_next_tick(w);
            if (n > 0)
                cr_assert_leq(next, expected[0].deadline > now ? expected[0].deadline : now,
                              "next tick %lu after the earliest deadline", (unsigned long)next);
            log.count = 0;
            log.last_deadline = 0;
            log.advancing_to = to;
            uint64_t got = wheel_advance(w, to, log_fire, &log);
            cr_assert_eq(got, n, "step %zu: fired %lu, reference %zu", steps, (unsigned long)got, n);
            cr_assert_not(log.out_of_order, "step %zu: not in deadline order", steps);
            /* same set; ties may come in insertion order, so compare sorted */
            if (log.count > 0)
                qsort(log.items, log.count, sizeof(firing), cmp_firing);
            for (size_t i = 0; i < n; i++)
                cr_assert(log.items[i].id == expected[i].id && log.items[i].deadline == expected[i].deadline,
                          "step %zu: firing %zu differs", steps, i);
            fired_total += n;
            now = to;
        }
    }
    cr_assert_gt(fired_total, 10000);
    cr_assert_gt(cancelled, 10000);
    free(log.items);
    free(expected);
    wheel_free(w);
}

Test(wheel, never_early_never_late_per_tick, .timeout = 30)
{
    /* Advancing one tick at a time: each timer fires exactly at its tick. */
    static test_timer timers[2000];
    wheel *w = wheel_new(5);
    cr_assert_not_null(w);
    for (int i = 0; i < 2000; i++) {
        timers[i] = (test_timer){.id = i, .pending = true, .deadline = 5 + 1 + (rnd() % 100000)};
        wheel_insert(w, &timers[i].wt, timers[i].deadline);
    }
    fire_log log = {0};
    for (uint64_t now = 6; now <= 5 + 100001; now++) {
        log.count = 0;
        log.advancing_to = now;
        wheel_advance(w, now, log_fire, &log);
        for (size_t i = 0; i < log.count; i++)
            cr_assert_eq(log.items[i].deadline, now, "timer %d with deadline %lu fired at %lu", log.items[i].id,
                         (unsigned long)log.items[i].deadline, (unsigned long)now);
    }
    cr_assert_eq(w->count, 0);
    cr_assert_eq(w->cascaded_when_due, 0, "every list above level 1 was moved down ahead of time");
    free(log.items);
    wheel_free(w);
}

Test(wheel, next_tick_empty_and_far, .timeout = 10)
{
    wheel *w = wheel_new(0);
    cr_assert_not_null(w);
    cr_assert_eq(wheel_next_tick(w), UINT64_MAX);
    test_timer t = {.id = 1};
    uint64_t far = (UINT64_C(1) << 32) + 12345;
    wheel_insert(w, &t.wt, far);
    uint64_t next = wheel_next_tick(w);
    cr_assert_leq(next, far);
    cr_assert_gt(next, 0);
    fire_log log = {0};
    cr_assert_eq(wheel_advance(w, far - 1, log_fire, &log), 0);
    cr_assert_eq(wheel_advance(w, far, log_fire, &log), 1);
    cr_assert_eq(log.items[0].id, 1);
    free(log.items);
    wheel_free(w);
}

/* Arms N timers at tick 0 due in [from, from + span), advances to `before`
 * as the timer thread does (again at once while the wheel says there is
 * work now), and checks that they all left level `level` slot `slot`
 * before `from`, in at least N / 256 advances, and that each then fires
 * exactly at its tick. */
static bool slot_occupied(const wheel *w, unsigned level, unsigned slot)
{
    return (w->parts[level][slot][0] | w->parts[level][slot][1]) != 0;
}

static void check_moved_down_ahead(uint64_t from, uint64_t span, uint64_t before, unsigned level, unsigned slot)
{
    enum { N = 20000 };
    static test_timer timers[N];
    wheel *w = wheel_new(0);
    cr_assert_not_null(w);
    for (int i = 0; i < N; i++) {
        timers[i] = (test_timer){.id = i, .pending = true, .deadline = from + (rnd() % span)};
        wheel_insert(w, &timers[i].wt, timers[i].deadline);
    }
    cr_assert(slot_occupied(w, level, slot), "armed at 0, the timers wait at level %u slot %u", level, slot);
    fire_log log = {0};
    cr_assert_eq(wheel_advance(w, before - 1, log_fire, &log), 0);
    cr_assert(slot_occupied(w, level, slot), "two blocks ahead: not moved yet");
    unsigned advances = 0;
    for (;;) {
        cr_assert_eq(wheel_advance(w, before, log_fire, &log), 0);
        advances++;
        if (!slot_occupied(w, level, slot))
            break;
        cr_assert_eq(wheel_next_tick(w), w->now, "timers to move down are work now");
    }
    cr_assert_geq(advances, N / 256, "moved faster than a step per advance");
    cr_assert_lt(w->now, from);
    for (uint64_t now = before + 1; now < from + span; now++) {
        log.count = 0;
        log.advancing_to = now;
        wheel_advance(w, now, log_fire, &log);
        for (size_t i = 0; i < log.count; i++)
            cr_assert_eq(log.items[i].deadline, now);
    }
    cr_assert_eq(w->count, 0);
    cr_assert_eq(w->cascaded_when_due, 0, "nothing was left to cascade when due");
    free(log.items);
    wheel_free(w);
}

Test(wheel, level2_slot_moves_down_in_the_block_before, .timeout = 60)
{
    /* Due in the 4,096-tick block at 8192 (level 2, slot 2): moved to
     * level 1 while the clock is in the block at 4096. */
    check_moved_down_ahead(8192, 4096, 4096, 2, 2);
}

Test(wheel, next_262144_block_moves_down_in_the_block_before, .timeout = 60)
{
    /* Due in the first 4,096 ticks after 262,144: level 2 holds them in
     * its next-block half (slot 0, parity 1); moved to level 1 while the
     * clock is in the 4,096-tick block before. */
    check_moved_down_ahead(262144, 4096, 262144 - 4096, 2, 0);
}

Test(wheel, level3_slot_moves_down_in_the_block_before, .timeout = 60)
{
    /* Due in the 262,144-tick block at 524,288 (level 3, slot 2): moved to
     * level 2 while the clock is in the 262,144-tick block before. */
    check_moved_down_ahead(524288, 4096, 262144, 3, 2);
}

Test(wheel, next_2_24_block_moves_down_in_the_block_before, .timeout = 60)
{
    /* Due in the first 4,096 ticks after 2^24: level 3 holds them in its
     * next-block half (slot 0, parity 1); moved to level 2 while the
     * clock is in the 262,144-tick block before. */
    check_moved_down_ahead(UINT64_C(1) << 24, 4096, (UINT64_C(1) << 24) - 262144, 3, 0);
}

/* Drives the clock the way an otherwise idle timer thread does: straight
 * to wheel_next_tick each time. Checks that every timer fires exactly at
 * its tick, that nothing had to cascade when due (far lists were visited
 * and moved down ahead of time), and that the visits are not a busy loop. */
static void check_idle_clock(uint64_t now, int n, uint64_t from, uint64_t span)
{
    static test_timer timers[20000];
    cr_assert_leq(n, 20000);
    wheel *w = wheel_new(now);
    cr_assert_not_null(w);
    for (int i = 0; i < n; i++) {
        timers[i] = (test_timer){.id = i, .pending = true, .deadline = from + (rnd() % span)};
        wheel_insert(w, &timers[i].wt, timers[i].deadline);
    }
    fire_log log = {0};
    size_t fired = 0, visits = 0;
    /* moves: n per level at most, PRECASCADE_STEP (256) per visit; and a
     * visit per distinct deadline and per list met on the way down */
    size_t cap = (size_t)n * 11 / 256 + (size_t)n * 2 + 1000;
    for (;;) {
        uint64_t next = wheel_next_tick(w);
        if (next == UINT64_MAX)
            break;
        cr_assert_geq(next, w->now, "the next tick is never in the past");
        log.count = 0;
        log.advancing_to = next;
        fired += wheel_advance(w, next, log_fire, &log);
        for (size_t i = 0; i < log.count; i++)
            cr_assert_eq(log.items[i].deadline, next, "timer %d due at %lu fired at %lu", log.items[i].id,
                         (unsigned long)log.items[i].deadline, (unsigned long)next);
        cr_assert_lt(++visits, cap, "%zu visits for %d timers: a busy loop", visits, n);
    }
    cr_assert_eq(fired, (size_t)n);
    cr_assert_eq(w->count, 0);
    cr_assert_eq(w->cascaded_when_due, 0, "%lu timers cascaded when due", (unsigned long)w->cascaded_when_due);
    free(log.items);
    wheel_free(w);
}

Test(wheel, idle_clock_moves_far_timers_down_ahead, .timeout = 60)
{
    /* Over a 2^30-tick boundary, all in one 2^24-tick part of the level
     * above (before every level but the top took two blocks: level 5,
     * cascaded whole when due). */
    check_idle_clock(0, 20000, UINT64_C(1) << 30, UINT64_C(1) << 24);
    /* Over a 2^24-tick boundary (level 3's next block). */
    check_idle_clock(0, 20000, (UINT64_C(1) << 24) - 1000, 300000);
    /* From an unaligned now, anywhere within a week (the longest
     * timeout), across the 2^30 boundary. */
    check_idle_clock(1000000007u, 20000, 1000000007u, UINT64_C(604800000));
    /* A few, far apart: each visited on its way down, none busy. */
    check_idle_clock(12345, 50, 12345, UINT64_C(1) << 34);
}
