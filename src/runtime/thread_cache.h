/* thread_cache.h - record caches for threads outside the worker pool.
 * See thread_cache.c for the design.
 */
#ifndef GS_RUNTIME_THREAD_CACHE_H
#define GS_RUNTIME_THREAD_CACHE_H

#include "internal.h"

/* A cache of free timer records of rt for the calling thread, which is
 * not one of rt's workers (they have their own). NULL if none can be had
 * (the caller then uses the pool's shared stack directly). The cache
 * stays valid until the thread's next call into another runtime. */
pool_cache *thread_timer_cache(gs_runtime *rt);

/* At gs_runtime_stop, before rt's timer pool is destroyed: detaches
 * every thread's cache from rt (their records go with the pool). */
void thread_caches_detach(gs_runtime *rt);

#endif
