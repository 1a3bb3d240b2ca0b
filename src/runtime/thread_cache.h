/* thread_cache.h - record caches for threads outside the worker pool.
 * See thread_cache.c for the design.
 */
#ifndef GS_RUNTIME_THREAD_CACHE_H
#define GS_RUNTIME_THREAD_CACHE_H

#include "internal.h"

/* A cache of free timer records of rt, and an outbox of armed timers
 * (timer_outbox.c), for the calling thread, which is not one of rt's
 * workers (they have their own). NULL if none can be had (the caller then
 * uses the pool's shared stack and the inbox directly). Valid until the
 * thread's next call into another runtime, which sends its held timers
 * on, as its exit does. */
timer_arming *thread_timer_side(gs_runtime *rt);

/* The timer thread's look over outside threads' outboxes (under the
 * caches' lock, so that no thread exits meanwhile): takes those holding a
 * timer due before horizon_ns; the earliest deadline any holds. */
void thread_outboxes_take(gs_runtime *rt, uint64_t horizon_ns, outbox_chain *into, uint64_t *kept_min);

/* At gs_runtime_stop, before rt's timer pool is destroyed: detaches
 * every thread's cache from rt (their free records go with the pool) and
 * appends the timers their outboxes hold to `held`. Afterwards no outside
 * thread hands rt anything, not even as it exits. */
void thread_caches_detach(gs_runtime *rt, outbox_chain *held);

#endif
