/* test_lateness_histogram.c - unit tests of the lateness histogram
 * (src/runtime/timer_lateness.c): where a lateness lands, what a
 * percentile read back from the buckets says, and its bad input. */
#include <criterion/criterion.h>

#include <string.h>

#include "runtime/timer_lateness.h"

/* A histogram holding the given latenesses, as the timer thread notes them
 * (against a round clock so far ahead that re-reading the real clock
 * never moves it). */
#define FAR_NS (UINT64_C(1) << 62)
static void fill(timer_lateness *l, gs_timer_lateness *out, const uint64_t *late, size_t n)
{
    lateness_init(l);
    lateness_round(l, FAR_NS);
    for (size_t i = 0; i < n; i++)
        lateness_note(l, FAR_NS - late[i]);
    memset(out, 0, sizeof *out);
    for (unsigned b = 0; b < GS_LATENESS_BUCKETS; b++) {
        out->buckets[b] = atomic_load(&l->buckets[b]);
        out->fired += out->buckets[b];
    }
    out->max_ns = atomic_load(&l->max_ns);
}

Test(lateness_histogram, bucket_edges, .timeout = 10)
{
    cr_assert_eq(lateness_bucket(0), 0);
    cr_assert_eq(lateness_bucket(1023), 0, "under 1,024 ns: the first bucket");
    cr_assert_eq(lateness_bucket(1024), 1);
    cr_assert_eq(lateness_bucket(1024 + 127), 1, "an eighth of [1024, 2048) is 128 wide");
    cr_assert_eq(lateness_bucket(1024 + 128), 2);
    cr_assert_eq(lateness_bucket(2047), 8);
    cr_assert_eq(lateness_bucket(2048), 9, "the next power of two starts a new eight");
    cr_assert_eq(lateness_bucket((UINT64_C(1) << 33) - 1), GS_LATENESS_BUCKETS - 2);
    cr_assert_eq(lateness_bucket(UINT64_C(1) << 33), GS_LATENESS_BUCKETS - 1, "2^33 ns and over: the last");
    cr_assert_eq(lateness_bucket(UINT64_MAX), GS_LATENESS_BUCKETS - 1);
}

Test(lateness_histogram, buckets_never_go_down_and_are_an_eighth_wide, .timeout = 10)
{
    /* Over every value up to 2^20 and sampled ones beyond: the bucket never
     * decreases, and a one-value histogram's percentile (its bucket's upper
     * bound) is above the value by at most an eighth of it. */
    unsigned last = 0;
    uint64_t x = 88172645463325252ull;
    for (uint64_t v = 0; v < (UINT64_C(1) << 22); v += (v < (1u << 20) ? 1 : 4099)) {
        unsigned b = lateness_bucket(v);
        cr_assert_geq(b, last, "bucket of %llu went down", (unsigned long long)v);
        last = b;
    }
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t v = x >> (x % 40 + 24); /* spread over the bucket range */
        timer_lateness l;
        gs_timer_lateness h;
        fill(&l, &h, &v, 1);
        h.max_ns = 0; /* the bound alone, unclamped */
        uint64_t p = gs_timer_lateness_percentile(&h, 50, 100);
        if (v >= (UINT64_C(1) << 33))
            cr_assert_eq(p, UINT64_MAX, "the last bucket has no upper bound");
        else if (v < 1024)
            cr_assert_eq(p, 1024);
        else
            cr_assert(p > v && p - v <= v / 8 + 1, "value %llu read back as %llu", (unsigned long long)v,
                      (unsigned long long)p);
    }
}

Test(lateness_histogram, percentiles_are_nearest_rank_and_clamped_to_the_max, .timeout = 10)
{
    uint64_t late[100];
    for (int i = 0; i < 100; i++)
        late[i] = (uint64_t)(i + 1) * 10000; /* 10 us .. 1 ms */
    timer_lateness l;
    gs_timer_lateness h;
    fill(&l, &h, late, 100);
    cr_assert_eq(h.fired, 100);
    cr_assert_eq(h.max_ns, 1000000);
    uint64_t p50 = gs_timer_lateness_percentile(&h, 50, 100);
    cr_assert(p50 > 500000 && p50 <= 500000 + 500000 / 8 + 1, "p50 %llu", (unsigned long long)p50);
    uint64_t p99 = gs_timer_lateness_percentile(&h, 99, 100);
    cr_assert(p99 > 990000 && p99 <= 1000000, "p99 %llu: its bucket's bound, clamped to the max",
              (unsigned long long)p99);
    cr_assert_eq(gs_timer_lateness_percentile(&h, 100, 100), 1000000);
    uint64_t p0 = gs_timer_lateness_percentile(&h, 0, 100);
    cr_assert(p0 > 10000 && p0 <= 10000 + 10000 / 8 + 1, "rank 1: the smallest, %llu",
              (unsigned long long)p0);
}

Test(lateness_histogram, the_clock_is_read_again_within_a_long_round, .timeout = 10)
{
    /* A round's clock is where the notes start; the note function reads
     * the real clock every few dozen timers, and never goes back. */
    timer_lateness l;
    lateness_init(&l);
    lateness_round(&l, 1000000); /* long before now */
    for (int i = 0; i < 100; i++)
        lateness_note(&l, 500);
    cr_assert_eq(atomic_load(&l.buckets[0]), 0);
    cr_assert_gt(atomic_load(&l.max_ns), 1000000, "the clock was read again: now is far past 1,000 ns");
    uint64_t max = atomic_load(&l.max_ns);
    lateness_note(&l, UINT64_MAX); /* a deadline ahead of the clock counts as on time */
    cr_assert_eq(atomic_load(&l.buckets[0]), 1);
    cr_assert_eq(atomic_load(&l.max_ns), max);
}

Test(lateness_histogram, bad_input, .timeout = 10)
{
    gs_timer_lateness h;
    memset(&h, 0, sizeof h);
    cr_assert_eq(gs_timer_lateness_percentile(NULL, 50, 100), 0);
    cr_assert_eq(gs_timer_lateness_percentile(&h, 50, 100), 0, "nothing counted");
    h.buckets[5] = 3;
    cr_assert_eq(gs_timer_lateness_percentile(&h, 50, 0), 0, "den 0");
    cr_assert_eq(gs_timer_lateness_percentile(&h, 101, 100), 0, "num > den");
    cr_assert_neq(gs_timer_lateness_percentile(&h, UINT64_MAX, UINT64_MAX), 0, "no overflow at the extremes");
}
