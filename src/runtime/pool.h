/* pool.h - type-stable pools of fixed-size records addressed by index.
 *
 * Records live in chunks that are allocated on demand and freed only by
 * pool_destroy, so a record's memory stays valid (and its atomics
 * meaningful) for the pool's whole life: a stale handle can always be
 * checked against the record's own generation instead of crashing. Free
 * records are kept on lock-free index stacks: one record at a time linked
 * through the word at `link_offset` in the record, or in batches that
 * caches hand back and take whole (pool.c).
 *
 * pool_alloc, pool_free, pool_at: any thread. pool_init, pool_destroy:
 * with no concurrent user.
 */
#ifndef GS_RUNTIME_POOL_H
#define GS_RUNTIME_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../queue/idxstack.h"

typedef struct pool {
    size_t rec_size;
    size_t link_offset; /* of an _Atomic uint32_t inside the record */
    uint32_t chunk_shift;
    uint32_t max_records;
    _Atomic(unsigned char *) *chunks;
    _Atomic uint32_t fresh; /* next never-used index */
    idxstack free;          /* single records, linked through the records */
    idxstack full;          /* batches (indices into *batches) of free records */
    struct pool *batches;   /* pool_batch records; NULL in a pool of batches */
    pthread_mutex_t grow_lock;
} pool;

/* rec_size must be a multiple of 64 if records are to be cache-line
 * aligned (chunks are). Returns GS_OK or GS_ENOMEM. */
int pool_init(pool *p, size_t rec_size, size_t link_offset, uint32_t chunk_shift, uint32_t max_records);
void pool_destroy(pool *p);

/* The record at idx, or NULL if idx is past the limit or in a chunk not
 * made yet. The memory of a returned record is zeroed when its chunk is
 * created and never freed before pool_destroy. Inline: every timer armed
 * and every message sent looks a record up, some twice. */
static inline void *pool_at(pool *p, uint32_t idx)
{
    if (idx >= p->max_records)
        return NULL;
    /* acquire: pairs with the release store that published the chunk, so
     * its zeroed contents are visible. */
    unsigned char *chunk = atomic_load_explicit(&p->chunks[idx >> p->chunk_shift], memory_order_acquire);
    if (chunk == NULL)
        return NULL;
    return chunk + (size_t)(idx & ((1u << p->chunk_shift) - 1)) * p->rec_size;
}

/* Takes a free record (recently freed first). GS_OK, GS_ENOMEM, GS_ELIMIT. */
int pool_alloc(pool *p, uint32_t *idx);
void pool_free(pool *p, uint32_t idx);

/* A free-record cache owned by one thread (a worker, the timer thread, an
 * outside thread: see thread_cache.c): allocating and freeing through it
 * touch no shared word, and it trades with the pool's shared stack, or
 * takes never-used records, POOL_CACHE_BATCH at a time (a batch each
 * way), so the pool's shared line moves between threads
 * once per batch instead of once per record. Records parked in a cache
 * are free but invisible to other threads: at most POOL_CACHE_CAP per
 * cache. */
#define POOL_CACHE_CAP 64
#define POOL_CACHE_BATCH 31

/* A run of POOL_CACHE_BATCH free records handed from one cache to
 * another as one unit (see pool.c): two cache lines, link and indices, so
 * that the taker reads two lines instead of one link in each record. */
typedef struct pool_batch {
    _Atomic uint32_t link; /* in the pool of batches, or in a pool's `full` */
    uint32_t idx[POOL_CACHE_BATCH];
} pool_batch;

typedef struct pool_cache {
    uint32_t n;
    uint32_t idx[POOL_CACHE_CAP];
} pool_cache;

/* As pool_alloc / pool_free, through c (NULL: straight to the pool). */
int pool_alloc_cached(pool *p, pool_cache *c, uint32_t *idx);
void pool_free_cached(pool *p, pool_cache *c, uint32_t idx);

/* One past the highest index ever handed out. */
uint32_t pool_high_water(pool *p);

#endif
