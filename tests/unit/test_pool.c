/* test_pool.c - unit tests of the type-stable record pools
 * (src/runtime/pool.c) through per-thread caches: every record handed
 * out once, the limit honoured when a cache takes never-used records
 * POOL_CACHE_BATCH at a time (the last run short), records freed through
 * one cache taken again through another, records a cache handed back in
 * a batch found by an allocation without a cache. (Records parked in one cache are invisible to
 * the others: pool.h.) */
#include <criterion/criterion.h>

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <genserver.h>

#include "runtime/pool.h"

typedef struct rec {
    _Atomic uint32_t link;
    uint32_t owner;
    unsigned char pad[56];
} rec;

#define LIMIT 70u /* not a multiple of POOL_CACHE_BATCH: the last run is short */

Test(pool, caches_hand_out_each_record_once_up_to_the_limit, .timeout = 30)
{
    pool p;
    cr_assert_eq(pool_init(&p, sizeof(rec), offsetof(rec, link), 6, LIMIT), GS_OK);
    pool_cache a = {0}, b = {0};
    static bool seen[LIMIT];
    memset(seen, 0, sizeof seen);
    uint32_t got[LIMIT];
    for (uint32_t i = 0; i < LIMIT; i++) {
        cr_assert_eq(pool_alloc_cached(&p, &a, &got[i]), GS_OK, "record %u", i);
        cr_assert_lt(got[i], LIMIT);
        cr_assert_not(seen[got[i]], "index %u handed out twice", got[i]);
        seen[got[i]] = true;
        rec *r = pool_at(&p, got[i]);
        cr_assert_not_null(r);
        cr_assert_eq(r->owner, 0u, "a fresh record is zeroed");
        r->owner = i + 1;
    }
    uint32_t idx;
    cr_assert_eq(pool_alloc_cached(&p, &a, &idx), GS_ELIMIT);
    cr_assert_eq(pool_alloc_cached(&p, &b, &idx), GS_ELIMIT);
    cr_assert_eq(pool_high_water(&p), LIMIT);
    /* Freed through a (which keeps the last ones and hands the older ones
     * to the shared stack in runs), taken again: b gets what a handed
     * back, a the rest; every record once. */
    for (uint32_t i = 0; i < LIMIT; i++)
        pool_free_cached(&p, &a, got[i]);
    memset(seen, 0, sizeof seen);
    uint32_t via_b = 0;
    while (pool_alloc_cached(&p, &b, &idx) == GS_OK) {
        cr_assert_lt(idx, LIMIT);
        cr_assert_not(seen[idx], "index %u reused twice", idx);
        seen[idx] = true;
        via_b++;
    }
    cr_assert_gt(via_b, 0u, "nothing reached the shared stack");
    for (uint32_t i = via_b; i < LIMIT; i++) {
        cr_assert_eq(pool_alloc_cached(&p, &a, &idx), GS_OK, "reuse %u", i);
        cr_assert_not(seen[idx], "index %u reused twice", idx);
        seen[idx] = true;
    }
    cr_assert_eq(pool_alloc_cached(&p, &a, &idx), GS_ELIMIT);
    pool_destroy(&p);
}

Test(pool, records_handed_back_in_a_batch_reach_uncached_allocations, .timeout = 30)
{
    pool p;
    cr_assert_eq(pool_init(&p, sizeof(rec), offsetof(rec, link), 6, LIMIT), GS_OK);
    pool_cache a = {0};
    uint32_t got[LIMIT];
    for (uint32_t i = 0; i < LIMIT; i++)
        cr_assert_eq(pool_alloc_cached(&p, &a, &got[i]), GS_OK, "record %u", i);
    /* Freeing all through a fills it past POOL_CACHE_CAP once: exactly one
     * batch goes back to the pool, the rest stays parked in a. */
    for (uint32_t i = 0; i < LIMIT; i++)
        pool_free_cached(&p, &a, got[i]);
    cr_assert_eq(a.n, LIMIT - POOL_CACHE_BATCH);
    static bool seen[LIMIT];
    memset(seen, 0, sizeof seen);
    uint32_t idx, n = 0;
    while (pool_alloc(&p, &idx) == GS_OK) {
        cr_assert_lt(idx, LIMIT);
        cr_assert_not(seen[idx], "index %u handed out twice", idx);
        seen[idx] = true;
        n++;
    }
    cr_assert_eq(n, POOL_CACHE_BATCH, "the batch's records, and nothing parked in the cache");
    for (uint32_t k = 0; k < a.n; k++)
        cr_assert_not(seen[a.idx[k]], "index %u is parked in the cache and was handed out", a.idx[k]);
    pool_destroy(&p);
}
