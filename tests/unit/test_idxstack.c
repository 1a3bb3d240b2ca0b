/* test_idxstack.c - unit tests of the tagged Treiber stack of indices
 * (src/queue/idxstack.c): LIFO order, empty pop, runs, and 4 threads
 * popping and pushing back a pool of 64 indices (two of them in runs), with an ownership flag per index
 * proving no index is ever held by two threads at once. Worker threads only
 * record; the test thread asserts after joining them.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "queue/idxstack.h"

typedef struct pool {
    _Atomic uint32_t link[64];
} pool;

static _Atomic uint32_t *pool_link(void *ctx, uint32_t idx)
{
    return &((pool *)ctx)->link[idx];
}

Test(idxstack, empty_pop_fails, .timeout = 30)
{
    static pool pl;
    idxstack s;
    idxstack_init(&s);
    uint32_t idx = 12345;
    cr_assert_not(idxstack_pop(&s, &idx, pool_link, &pl));
    cr_assert_eq(idx, 12345, "idx untouched on failure");
    cr_assert_not(idxstack_pop(&s, &idx, pool_link, &pl));
}

Test(idxstack, lifo_order, .timeout = 30)
{
    static pool pl;
    idxstack s;
    idxstack_init(&s);
    uint32_t idx;
    for (uint32_t i = 0; i < 64; i++)
        idxstack_push(&s, i, pool_link, &pl);
    for (uint32_t i = 64; i-- > 0;) {
        cr_assert(idxstack_pop(&s, &idx, pool_link, &pl));
        cr_assert_eq(idx, i);
    }
    cr_assert_not(idxstack_pop(&s, &idx, pool_link, &pl));

    /* Index 0 (stored as 1 in the top word) and interleaving. */
    idxstack_push(&s, 0, pool_link, &pl);
    cr_assert(idxstack_pop(&s, &idx, pool_link, &pl));
    cr_assert_eq(idx, 0);
    cr_assert_not(idxstack_pop(&s, &idx, pool_link, &pl));
    idxstack_push(&s, 5, pool_link, &pl);
    idxstack_push(&s, 9, pool_link, &pl);
    cr_assert(idxstack_pop(&s, &idx, pool_link, &pl));
    cr_assert_eq(idx, 9);
    idxstack_push(&s, 63, pool_link, &pl);
    idxstack_push(&s, 0, pool_link, &pl);
    const uint32_t want[] = {0, 63, 5};
    for (int i = 0; i < 3; i++) {
        cr_assert(idxstack_pop(&s, &idx, pool_link, &pl));
        cr_assert_eq(idx, want[i]);
    }
    cr_assert_not(idxstack_pop(&s, &idx, pool_link, &pl));
}

Test(idxstack, many_at_once, .timeout = 30)
{
    static pool pl;
    idxstack s;
    idxstack_init(&s);
    uint32_t out[64];
    cr_assert_eq(idxstack_pop_many(&s, out, 8, pool_link, &pl), 0u);
    const uint32_t run[] = {7, 3, 60, 0, 12};
    idxstack_push(&s, 40, pool_link, &pl);
    idxstack_push_many(&s, run, 5, pool_link, &pl);
    idxstack_push(&s, 41, pool_link, &pl);
    /* 41 on top, then the run in its order, then 40. */
    cr_assert_eq(idxstack_pop_many(&s, out, 3, pool_link, &pl), 3u);
    cr_assert_eq(out[0], 41);
    cr_assert_eq(out[1], 7);
    cr_assert_eq(out[2], 3);
    cr_assert_eq(idxstack_pop_many(&s, out, 64, pool_link, &pl), 4u);
    const uint32_t rest[] = {60, 0, 12, 40};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(out[i], rest[i]);
    cr_assert_eq(idxstack_pop_many(&s, out, 64, pool_link, &pl), 0u);
    uint32_t one = 9;
    idxstack_push_many(&s, &one, 1, pool_link, &pl);
    uint32_t idx;
    cr_assert(idxstack_pop(&s, &idx, pool_link, &pl));
    cr_assert_eq(idx, 9);
    cr_assert_eq(idxstack_pop_many(&s, out, 0, pool_link, &pl), 0u);
}

/* White box: the version half of the top word wraps without harm. */
Test(idxstack, version_wraps, .timeout = 30)
{
    static pool pl;
    idxstack s;
    idxstack_init(&s);
    atomic_store(&s.top, (uint64_t)UINT32_MAX << 32); /* empty, version max */
    uint32_t idx;
    cr_assert_not(idxstack_pop(&s, &idx, pool_link, &pl));
    idxstack_push(&s, 3, pool_link, &pl);
    idxstack_push(&s, 4, pool_link, &pl);
    cr_assert(idxstack_pop(&s, &idx, pool_link, &pl));
    cr_assert_eq(idx, 4);
    cr_assert(idxstack_pop(&s, &idx, pool_link, &pl));
    cr_assert_eq(idx, 3);
    cr_assert_not(idxstack_pop(&s, &idx, pool_link, &pl));
}

/* ---- concurrent: 4 threads cycling 64 indices -------------------------- */

enum { IS_THREADS = 4, IS_POOL = 64, IS_ROUNDS = 300000, IS_HOLD_MAX = 8 };

typedef struct is_shared {
    idxstack s;
    pool pl;
    atomic_bool owned[IS_POOL];
    atomic_uint double_owner; /* popped an index somebody holds */
    atomic_uint lost_owner;   /* released an index we did not hold */
    atomic_uint bad_index;
    atomic_uint pops_ok;
    atomic_bool go;
} is_shared;

static is_shared is;

static void *is_worker(void *arg)
{
    uint32_t seed = 0x9e3779b9u * (uint32_t)((uintptr_t)arg + 1);
    bool in_runs = ((uintptr_t)arg & 1) != 0; /* odd threads pop and push runs */
    uint32_t held[IS_HOLD_MAX];
    while (!atomic_load(&is.go))
        sched_yield();
    for (int r = 0; r < IS_ROUNDS; r++) {
        seed = seed * 1664525u + 1013904223u;
        unsigned want = 1 + (seed >> 28) % IS_HOLD_MAX;
        unsigned n = 0;
        if (in_runs) {
            uint32_t got[IS_HOLD_MAX];
            uint32_t k = idxstack_pop_many(&is.s, got, want, pool_link, &is.pl);
            for (uint32_t i = 0; i < k; i++) {
                if (got[i] >= IS_POOL) {
                    atomic_fetch_add(&is.bad_index, 1);
                    continue;
                }
                if (atomic_exchange(&is.owned[got[i]], true))
                    atomic_fetch_add(&is.double_owner, 1);
                held[n++] = got[i];
            }
        }
        while (!in_runs && n < want) {
            uint32_t idx;
            if (!idxstack_pop(&is.s, &idx, pool_link, &is.pl))
                break; /* the others hold the rest */
            if (idx >= IS_POOL) {
                atomic_fetch_add(&is.bad_index, 1);
                continue;
            }
            if (atomic_exchange(&is.owned[idx], true))
                atomic_fetch_add(&is.double_owner, 1);
            held[n++] = idx;
        }
        atomic_fetch_add_explicit(&is.pops_ok, n, memory_order_relaxed);
        if ((r & 127) == 0)
            sched_yield();
        /* Release in a scrambled order (as one run on odd threads). */
        uint32_t order[IS_HOLD_MAX];
        for (unsigned k = 0; k < n; k++) {
            uint32_t idx = order[k] = held[(k + (seed & 7)) % n];
            if (!atomic_exchange(&is.owned[idx], false))
                atomic_fetch_add(&is.lost_owner, 1);
            if (!in_runs)
                idxstack_push(&is.s, idx, pool_link, &is.pl);
        }
        if (in_runs && n > 0)
            idxstack_push_many(&is.s, order, n, pool_link, &is.pl);
    }
    return NULL;
}

Test(idxstack, four_threads_pool_of_64, .timeout = 30)
{
    memset(&is, 0, sizeof is);
    idxstack_init(&is.s);
    for (uint32_t i = 0; i < IS_POOL; i++) {
        atomic_init(&is.pl.link[i], 0);
        atomic_init(&is.owned[i], false);
        idxstack_push(&is.s, i, pool_link, &is.pl);
    }
    atomic_init(&is.double_owner, 0);
    atomic_init(&is.lost_owner, 0);
    atomic_init(&is.bad_index, 0);
    atomic_init(&is.pops_ok, 0);
    atomic_init(&is.go, false);

    pthread_t th[IS_THREADS];
    for (uintptr_t i = 0; i < IS_THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, is_worker, (void *)i), 0);
    atomic_store(&is.go, true);
    for (int i = 0; i < IS_THREADS; i++)
        pthread_join(th[i], NULL);

    cr_assert_eq(atomic_load(&is.bad_index), 0);
    cr_assert_eq(atomic_load(&is.double_owner), 0, "an index was held by two threads at once");
    cr_assert_eq(atomic_load(&is.lost_owner), 0);
    cr_assert_gt(atomic_load(&is.pops_ok), 0);

    unsigned seen[IS_POOL] = {0};
    uint32_t idx;
    unsigned n = 0;
    while (idxstack_pop(&is.s, &idx, pool_link, &is.pl)) {
        cr_assert_lt(idx, IS_POOL);
        seen[idx]++;
        cr_assert_leq(++n, IS_POOL, "more entries than the pool: a cycle or a duplicate");
    }
    for (uint32_t i = 0; i < IS_POOL; i++)
        cr_assert_eq(seen[i], 1, "index %u present %u times", i, seen[i]);
    cr_assert_eq(n, IS_POOL);
}
