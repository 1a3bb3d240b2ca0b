/* stress_pool.c - ThreadSanitizer stress of the record pool
 * (src/runtime/pool.c): per-thread caches trading records through
 * batches on the shared `full` stack, single records on the linked
 * `free` stack, and never-used records, all at once.
 *
 * Plain main (TSan cannot start Criterion binaries). THREADS threads
 * share a pool of LIMIT records, fewer than their caches and hands can
 * hold, so that every path runs: a thread allocates a random number of
 * records through its cache (now and then without it), takes ownership
 * of each with an atomic flag (two owners at once is a failure), checks
 * and rewrites a plain payload that the previous owner wrote (TSan
 * reports a race if the pool's orders do not hand it over), and frees
 * them again through its cache or, now and then, one by one. At the end
 * every cache is flushed and the pool must hand out each record exactly
 * once more. A failed check prints the reason and exits 1; a watchdog
 * turns a hang into a failure (stress_common.h).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "runtime/pool.h"
#include "stress_common.h"

enum { THREADS = 4, LIMIT = 300, ROUNDS = 20000, HOLD_MAX = 48 };

typedef struct rec {
    _Atomic uint32_t link;
    uint32_t pad;
    uint64_t payload; /* plain: (index << 32) | writer's tag */
    unsigned char rest[48];
} rec;

static struct {
    pool p;
    pool_cache caches[THREADS];
    atomic_bool owned[LIMIT];
    atomic_uint double_owner, lost_owner, bad_payload, bad_rc, taken;
    atomic_bool go;
} st;

static void *worker(void *arg)
{
    uint32_t me = (uint32_t)(uintptr_t)arg;
    uint32_t seed = 0x9e3779b9u * (me + 1);
    pool_cache *c = &st.caches[me];
    uint32_t held[HOLD_MAX];
    while (!atomic_load(&st.go))
        sched_yield();
    for (int r = 0; r < ROUNDS; r++) {
        seed = seed * 1664525u + 1013904223u;
        unsigned want = 1 + (seed >> 24) % HOLD_MAX;
        bool direct = (seed & 15) == 0; /* sometimes bypass the cache */
        unsigned n = 0;
        while (n < want) {
            uint32_t idx;
            int rc = pool_alloc_cached(&st.p, direct ? NULL : c, &idx);
            if (rc == GS_ELIMIT)
                break; /* the others hold the rest */
            if (rc != GS_OK || idx >= LIMIT) {
                atomic_fetch_add(&st.bad_rc, 1);
                break;
            }
            if (atomic_exchange_explicit(&st.owned[idx], true, memory_order_relaxed))
                atomic_fetch_add(&st.double_owner, 1);
            rec *x = pool_at(&st.p, idx);
            if (x->payload != 0 && (x->payload >> 32) != idx)
                atomic_fetch_add(&st.bad_payload, 1);
            x->payload = (uint64_t)idx << 32 | (me << 24) | (uint32_t)(r & 0xffffff);
            held[n++] = idx;
        }
        atomic_fetch_add_explicit(&st.taken, n, memory_order_relaxed);
        if ((r & 63) == 0)
            sched_yield();
        for (unsigned k = 0; k < n; k++) {
            if (!atomic_exchange_explicit(&st.owned[held[k]], false, memory_order_relaxed))
                atomic_fetch_add(&st.lost_owner, 1);
            if ((seed >> 8 & 7) == 0)
                pool_free(&st.p, held[k]);
            else
                pool_free_cached(&st.p, c, held[k]);
        }
    }
    return NULL;
}

int main(void)
{
    stress_watchdog(120);
    memset(&st, 0, sizeof st);
    CHECKF(pool_init(&st.p, sizeof(rec), offsetof(rec, link), 6, LIMIT) == GS_OK, "pool_init");
    /* The never-used records run out only when the threads hold most of
     * the pool at once, which a busy machine's scheduling may not bring
     * about in one phase (CI saw 287 of 300): up to five phases. */
    for (int phase = 0; phase < 5 && pool_high_water(&st.p) < LIMIT; phase++) {
        pthread_t th[THREADS];
        atomic_store(&st.go, false);
        for (uint32_t i = 0; i < THREADS; i++)
            CHECKF(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i) == 0, "pthread_create");
        atomic_store(&st.go, true);
        for (int i = 0; i < THREADS; i++)
            pthread_join(th[i], NULL);
    }

    CHECKF(atomic_load(&st.bad_rc) == 0, "an allocation failed other than with GS_ELIMIT");
    CHECKF(atomic_load(&st.double_owner) == 0, "a record was handed to two owners at once");
    CHECKF(atomic_load(&st.lost_owner) == 0, "a record was freed twice");
    CHECKF(atomic_load(&st.bad_payload) == 0, "a record's payload was not handed over");
    CHECKF(pool_high_water(&st.p) == LIMIT, "only %u of %u records were ever used", pool_high_water(&st.p),
           LIMIT);
    /* Flush the caches, then every record must come out exactly once. */
    for (int i = 0; i < THREADS; i++)
        for (uint32_t k = 0; k < st.caches[i].n; k++)
            pool_free(&st.p, st.caches[i].idx[k]);
    static unsigned seen[LIMIT];
    uint32_t idx, n = 0;
    while (pool_alloc(&st.p, &idx) == GS_OK) {
        CHECKF(idx < LIMIT, "index %u out of range", idx);
        CHECKF(++seen[idx] == 1, "index %u free twice", idx);
        n++;
    }
    CHECKF(n == LIMIT, "%u of %u records free at the end", n, LIMIT);
    pool_destroy(&st.p);
    printf("stress_pool: %u records taken over %d threads\n", atomic_load(&st.taken), THREADS);
    return 0;
}
