/* pool.c - type-stable record pools (see pool.h for the contract).
 *
 * Free records are kept in two tiers. Records freed one at a time go on
 * `free`, a stack linked through the records themselves. Records a cache
 * hands back POOL_CACHE_BATCH at a time go in a batch (a record of a
 * small pool of its own holding their indices) on `full`. Why not link
 * the run through its records (the first design): taking a linked run
 * walks one link per record, each a dependent cache miss on a line the
 * freeing thread wrote last; W7's arming thread, refilling from what the
 * timer thread freed, spent 190 cycles per timer in that walk (43% of
 * taking a record). A batch is read in two lines whose loads overlap,
 * and each record is touched only when it is used. */
#include "pool.h"
#include "alloc.h"
#include "chunk_map.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "genserver.h"

#define BATCH_CHUNK_SHIFT 9 /* 512 batches, 64 KiB, per chunk */

static int pool_init_plain(pool *p, size_t rec_size, size_t link_offset, uint32_t chunk_shift,
                           uint32_t max_records);

int pool_init(pool *p, size_t rec_size, size_t link_offset, uint32_t chunk_shift, uint32_t max_records)
{
    int rc = pool_init_plain(p, rec_size, link_offset, chunk_shift, max_records);
    if (rc != GS_OK)
        return rc;
    /* Every batch on `full` holds POOL_CACHE_BATCH distinct free records,
     * so this many batches always suffice. */
    p->batches = gs_malloc(sizeof *p->batches);
    if (p->batches == NULL ||
        pool_init_plain(p->batches, sizeof(pool_batch), offsetof(pool_batch, link), BATCH_CHUNK_SHIFT,
                        max_records / POOL_CACHE_BATCH + 1) != GS_OK) {
        free(p->batches);
        p->batches = NULL;
        pool_destroy(p);
        return GS_ENOMEM;
    }
    return GS_OK;
}

static int pool_init_plain(pool *p, size_t rec_size, size_t link_offset, uint32_t chunk_shift,
                           uint32_t max_records)
{
    p->batches = NULL;
    idxstack_init(&p->full);
    p->rec_size = rec_size;
    p->link_offset = link_offset;
    p->chunk_shift = chunk_shift;
    p->max_records = max_records;
    uint32_t nchunks = (max_records + (1u << chunk_shift) - 1) >> chunk_shift;
    p->chunks = gs_calloc(nchunks, sizeof *p->chunks);
    if (p->chunks == NULL)
        return GS_ENOMEM;
    atomic_init(&p->fresh, 0);
    idxstack_init(&p->free);
    pthread_mutex_init(&p->grow_lock, NULL);
    return GS_OK;
}

/* Chunk memory. Big chunks are mapped, not allocated: the kernel hands
 * out zeroed pages, so a chunk costs no memset, and none of the memory of
 * records never used unless it is populated (chunk_map.c).
 *
 * A pool that grows past its first chunk is being filled fast (W7 arms
 * 500,000 live timers: 64 MiB), and taking its pages one fault at a time
 * cost the filling thread a quarter of its time. So a mapped chunk other
 * than the first is populated at once, paid by the thread that needs the
 * chunk, in the page size measured to be cheaper here (chunk_map.h). The
 * first chunk is left to fill by faults: a runtime with a handful of
 * timers or servers keeps its resident memory small. */
#define CHUNK_MAP_MIN ((size_t)64 << 10)

static unsigned char *chunk_alloc(size_t bytes, bool populate)
{
    if (bytes < CHUNK_MAP_MIN) {
        unsigned char *c = gs_aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (c != NULL)
            memset(c, 0, bytes); /* all-zero is every record's initial state */
        return c;
    }
    return chunk_map(bytes, populate);
}

static void chunk_free(unsigned char *c, size_t bytes)
{
    if (c == NULL)
        return;
    if (bytes < CHUNK_MAP_MIN)
        free(c);
    else
        chunk_unmap(c, bytes);
}

void pool_destroy(pool *p)
{
    if (p->chunks == NULL)
        return;
    if (p->batches != NULL) {
        pool_destroy(p->batches);
        free(p->batches);
        p->batches = NULL;
    }
    uint32_t nchunks = (p->max_records + (1u << p->chunk_shift) - 1) >> p->chunk_shift;
    for (uint32_t i = 0; i < nchunks; i++)
        chunk_free(atomic_load_explicit(&p->chunks[i], memory_order_relaxed), p->rec_size << p->chunk_shift);
    free(p->chunks);
    p->chunks = NULL;
    pthread_mutex_destroy(&p->grow_lock);
}

static _Atomic uint32_t *free_link(void *ctx, uint32_t idx)
{
    pool *p = ctx;
    return (_Atomic uint32_t *)((unsigned char *)pool_at(p, idx) + p->link_offset);
}

/* Makes sure the chunk holding idx exists. */
static int ensure_chunk(pool *p, uint32_t idx)
{
    _Atomic(unsigned char *) *slot = &p->chunks[idx >> p->chunk_shift];
    if (atomic_load_explicit(slot, memory_order_acquire) != NULL)
        return GS_OK;
    int rc = GS_OK;
    pthread_mutex_lock(&p->grow_lock);
    if (atomic_load_explicit(slot, memory_order_relaxed) == NULL) {
        unsigned char *chunk = chunk_alloc(p->rec_size << p->chunk_shift, (idx >> p->chunk_shift) > 0);
        if (chunk == NULL)
            rc = GS_ENOMEM;
        else
            atomic_store_explicit(slot, chunk, memory_order_release);
    }
    pthread_mutex_unlock(&p->grow_lock);
    return rc;
}

/* Takes up to `want` never-used indices, [*first, *first + n): returns n
 * (0: GS_ELIMIT or GS_ENOMEM in *rc). Indices past the limit are given
 * back; indices whose chunk cannot be made are lost (later ones retry). */
static uint32_t take_fresh(pool *p, uint32_t want, uint32_t *first, int *rc)
{
    uint32_t i = atomic_fetch_add_explicit(&p->fresh, want, memory_order_relaxed);
    uint32_t n = i >= p->max_records ? 0 : p->max_records - i;
    if (n > want)
        n = want;
    if (n < want)
        atomic_fetch_sub_explicit(&p->fresh, want - n, memory_order_relaxed);
    *rc = GS_ELIMIT;
    if (n == 0)
        return 0;
    /* A run spans at most two chunks (want <= a chunk's records). */
    if ((*rc = ensure_chunk(p, i)) != GS_OK || (*rc = ensure_chunk(p, i + n - 1)) != GS_OK)
        return 0;
    *first = i;
    return n;
}

/* Takes a batch of free records off `full` into out: POOL_CACHE_BATCH or
 * 0. The batch's indices are read before the batch is freed. */
static uint32_t take_batch(pool *p, uint32_t *out)
{
    uint32_t b;
    /* acquire (in idxstack_pop): pairs with give_batch's release push, so
     * the indices written into the batch are visible. */
    if (p->batches == NULL || !idxstack_pop(&p->full, &b, free_link, p->batches))
        return 0;
    pool_batch *pb = pool_at(p->batches, b);
    memcpy(out, pb->idx, sizeof pb->idx);
    pool_free(p->batches, b);
    return POOL_CACHE_BATCH;
}

/* Parks a run of POOL_CACHE_BATCH free records in a batch on `full`;
 * false if no batch could be had (out of memory): the caller links them
 * on `free` instead. */
static bool give_batch(pool *p, const uint32_t *idx)
{
    uint32_t b;
    if (p->batches == NULL || pool_alloc(p->batches, &b) != GS_OK)
        return false;
    pool_batch *pb = pool_at(p->batches, b);
    memcpy(pb->idx, idx, sizeof pb->idx);
    /* release (in idxstack_push): the indices before the batch is seen. */
    idxstack_push(&p->full, b, free_link, p->batches);
    return true;
}

int pool_alloc(pool *p, uint32_t *idx)
{
    if (idxstack_pop(&p->free, idx, free_link, p))
        return GS_OK;
    /* Free records may all sit in batches (caches hand back only those):
     * take one batch, keep one record, link the rest on `free`. */
    uint32_t run[POOL_CACHE_BATCH];
    if (take_batch(p, run) == POOL_CACHE_BATCH) {
        idxstack_push_many(&p->free, run + 1, POOL_CACHE_BATCH - 1, free_link, p);
        *idx = run[0];
        return GS_OK;
    }
    int rc;
    return take_fresh(p, 1, idx, &rc) == 1 ? GS_OK : rc;
}

void pool_free(pool *p, uint32_t idx)
{
    idxstack_push(&p->free, idx, free_link, p);
}

int pool_alloc_cached(pool *p, pool_cache *c, uint32_t *idx)
{
    if (c == NULL)
        return pool_alloc(p, idx);
    if (c->n == 0) {
        /* Refill with a batch, or a linked run from the shared stack, or
         * else with a run of fresh records taken with one add (lowest
         * index first out, so that they are used in address order). */
        c->n = take_batch(p, c->idx);
        if (c->n == 0)
            c->n = idxstack_pop_many(&p->free, c->idx, POOL_CACHE_BATCH, free_link, p);
        if (c->n == 0) {
            uint32_t first;
            int rc;
            uint32_t n = take_fresh(p, POOL_CACHE_BATCH, &first, &rc);
            if (n == 0)
                return rc;
            for (uint32_t i = 0; i < n; i++)
                c->idx[i] = first + n - 1 - i;
            c->n = n;
        }
    }
    *idx = c->idx[--c->n];
    /* Start fetching the next record for writing: it was freed by another
     * thread (W7: the timer thread), so its lines are a cross-core miss
     * away, and the caller is about to fill it and publish it with a
     * locked instruction, which waits for those stores. One record ahead
     * is about one arming of lead time. */
    if (c->n > 0) {
        unsigned char *next = pool_at(p, c->idx[c->n - 1]);
        for (size_t off = 0; off < p->rec_size; off += 64)
            __builtin_prefetch(next + off, 1);
    }
    return GS_OK;
}

void pool_free_cached(pool *p, pool_cache *c, uint32_t idx)
{
    if (c == NULL) {
        pool_free(p, idx);
        return;
    }
    if (c->n == POOL_CACHE_CAP) {
        /* Hand the older half back as a batch; keep the recent (warm) half. */
        if (!give_batch(p, c->idx))
            idxstack_push_many(&p->free, c->idx, POOL_CACHE_BATCH, free_link, p);
        memmove(c->idx, c->idx + POOL_CACHE_BATCH, (POOL_CACHE_CAP - POOL_CACHE_BATCH) * sizeof c->idx[0]);
        c->n = POOL_CACHE_CAP - POOL_CACHE_BATCH;
    }
    c->idx[c->n++] = idx;
}

uint32_t pool_high_water(pool *p)
{
    uint32_t n = atomic_load_explicit(&p->fresh, memory_order_acquire);
    return n > p->max_records ? p->max_records : n;
}
