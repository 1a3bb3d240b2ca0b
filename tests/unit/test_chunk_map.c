/* test_chunk_map.c - unit tests of the pool chunks' memory
 * (src/runtime/chunk_map.c): the page-size policy, driven with made-up
 * measurements (a backing's cost is the mean of its last few chunks but
 * the dearest, so one slow chunk does not decide and frequent ones do; the cheaper wins, small pages when tied
 * or unmeasured), and real chunks: both backings probed before the first
 * populated chunk and the unused one again every CHUNK_REPROBE_EVERY,
 * chunks zeroed, writable, measured, huge-page aligned when huge, and
 * given back; an injected allocation failure gives NULL. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/chunk_map.h"

static chunk_costs costs(uint64_t n_small, uint64_t ns_small, uint64_t n_huge, uint64_t ns_huge)
{
    chunk_costs c = {{n_small, n_huge}, {ns_small, ns_huge}};
    return c;
}

Test(chunk_map, the_cheaper_backing_wins_small_when_tied_or_unmeasured, .timeout = 10)
{
    chunk_costs c = costs(0, 0, 0, 0);
    cr_assert_eq(chunk_choose(&c), BACKING_SMALL, "nothing measured");
    c = costs(0, 0, 2, 100);
    cr_assert_eq(chunk_choose(&c), BACKING_SMALL, "small pages not measured");
    c = costs(2, 4000000, 2, 300000);
    cr_assert_eq(chunk_choose(&c), BACKING_HUGE);
    c = costs(2, 1000000, 2, 3000000);
    cr_assert_eq(chunk_choose(&c), BACKING_SMALL);
    c = costs(5, 700, 5, 700);
    cr_assert_eq(chunk_choose(&c), BACKING_SMALL, "a tie");
}

/* Feeds ns into a ring as record_cost does; returns the new count. */
static uint64_t feed(uint64_t recent[CHUNK_COST_WINDOW], uint64_t n, uint64_t ns)
{
    recent[n % CHUNK_COST_WINDOW] = ns;
    return n + 1;
}

Test(chunk_map, a_backing_costs_the_mean_of_its_last_chunks_but_the_dearest, .timeout = 10)
{
    uint64_t recent[CHUNK_COST_WINDOW] = {0};
    uint64_t n = 0;
    cr_assert_eq(chunk_cost_of(recent, n), 0, "nothing measured");
    /* The case that chose 6x dearer pages for a whole W7 run: the first
     * huge page a process took stalled in compaction (9.3 ms), the rest
     * took 0.15-0.22 ms; small pages took 0.97 ms. */
    n = feed(recent, n, 9316000);
    cr_assert_eq(chunk_cost_of(recent, n), 9316000, "one measurement is the cost");
    n = feed(recent, n, 220000);
    cr_assert_eq(chunk_cost_of(recent, n), 220000, "a lone slow chunk does not decide");
    n = feed(recent, n, 174000);
    cr_assert_eq(chunk_cost_of(recent, n), 197000);
    chunk_costs c = costs(2, 969000, n, chunk_cost_of(recent, n));
    cr_assert_eq(chunk_choose(&c), BACKING_HUGE);
    /* Huge pages that must often be compacted (after another process
     * freed its memory): with two dear chunks in the window (the probe's
     * and a new one), the expected cost is dear, and small pages win. */
    n = feed(recent, n, 6000000);
    cr_assert_eq(chunk_cost_of(recent, n), (220000 + 174000 + 6000000) / 3);
    c = costs(2, 969000, n, chunk_cost_of(recent, n));
    cr_assert_eq(chunk_choose(&c), BACKING_SMALL, "dear half the time: small pages win");
    /* A cheap chunk pushes the probe's 9.3 ms out of the window; the one
     * dear chunk left is the one left out. */
    n = feed(recent, n, 150000);
    cr_assert_eq(chunk_cost_of(recent, n), (150000 + 220000 + 174000) / 3);
    c = costs(2, 969000, n, chunk_cost_of(recent, n));
    cr_assert_eq(chunk_choose(&c), BACKING_HUGE);
}

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

Test(chunk_map, populated_chunks_are_zeroed_writable_and_measured, .timeout = 60)
{
    chunk_costs before, after;
    chunk_costs_read(&before);
    cr_assert_eq(before.chunks[0] + before.chunks[1], 0, "a fresh process has measured nothing");
    enum { N = 3 };
    unsigned char *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = chunk_map(2 * CHUNK_HUGE_BYTES, true);
        cr_assert_not_null(c[i]);
        cr_assert(all_zero(c[i], 2 * CHUNK_HUGE_BYTES), "chunk %d is zeroed", i);
        memset(c[i], 0xA5, 2 * CHUNK_HUGE_BYTES);
    }
    chunk_costs_read(&after);
    /* The probe measured both backings once before the first chunk... */
    cr_assert_geq(after.chunks[BACKING_SMALL], CHUNK_PROBES);
    cr_assert_geq(after.chunks[BACKING_HUGE], CHUNK_PROBES);
    cr_assert_gt(after.cost_ns[BACKING_SMALL], 0);
    cr_assert_gt(after.cost_ns[BACKING_HUGE], 0);
    /* ...and every chunk is measured as well. */
    cr_assert_eq(after.chunks[0] + after.chunks[1], 2 * CHUNK_PROBES + N);
    /* Later chunks: the backing the policy picks is the one measured, and
     * a huge chunk starts on a huge-page boundary. */
    for (int i = 0; i < 4; i++) {
        chunk_backing expect = chunk_choose(&after);
        unsigned char *m = chunk_map(CHUNK_HUGE_BYTES, true);
        cr_assert_not_null(m);
        chunk_costs now;
        chunk_costs_read(&now);
        cr_assert_eq(now.chunks[expect], after.chunks[expect] + 1);
        cr_assert_eq(now.chunks[!expect], after.chunks[!expect]);
        if (expect == BACKING_HUGE)
            cr_assert_eq((uintptr_t)m & (CHUNK_HUGE_BYTES - 1), 0);
        chunk_unmap(m, CHUNK_HUGE_BYTES);
        after = now;
    }
    for (int i = 0; i < N; i++)
        chunk_unmap(c[i], 2 * CHUNK_HUGE_BYTES);
}

Test(chunk_map, the_unused_backing_is_probed_again_every_so_often, .timeout = 120)
{
    for (int i = 0; i < CHUNK_REPROBE_EVERY; i++) {
        unsigned char *m = chunk_map(CHUNK_HUGE_BYTES, true);
        cr_assert_not_null(m);
        chunk_unmap(m, CHUNK_HUGE_BYTES);
    }
    chunk_costs c;
    chunk_costs_read(&c);
    /* The probes, the chunks, and one re-probe of the backing not in use
     * then, so both were measured after the first probe whichever won. */
    cr_assert_eq(c.chunks[0] + c.chunks[1], 2 * CHUNK_PROBES + CHUNK_REPROBE_EVERY + 1);
    cr_assert_gt(c.chunks[BACKING_SMALL], CHUNK_PROBES);
    cr_assert_gt(c.chunks[BACKING_HUGE], CHUNK_PROBES);
}

Test(chunk_map, unpopulated_and_odd_sized_chunks_are_not_measured, .timeout = 30)
{
    chunk_costs before, after;
    chunk_costs_read(&before);
    size_t odd = (size_t)3 << 19; /* 1.5 MiB: never huge */
    unsigned char *a = chunk_map(CHUNK_HUGE_BYTES, false);
    unsigned char *b = chunk_map(odd, true);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert(all_zero(a, CHUNK_HUGE_BYTES));
    cr_assert(all_zero(b, odd));
    memset(b, 1, odd);
    chunk_costs_read(&after);
    cr_assert_eq(after.chunks[0] + after.chunks[1], before.chunks[0] + before.chunks[1]);
    chunk_unmap(a, CHUNK_HUGE_BYTES);
    chunk_unmap(b, odd);
    chunk_unmap(NULL, odd); /* nothing to give back: a no-op */
}

Test(chunk_map, an_injected_failure_gives_null, .timeout = 10)
{
    alloc_fail_after(0);
    void *c = chunk_map(CHUNK_HUGE_BYTES, true);
    alloc_fail_after(-1);
    cr_assert_null(c);
}
