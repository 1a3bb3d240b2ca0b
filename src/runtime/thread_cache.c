/* thread_cache.c - record caches for threads outside the worker pool.
 *
 * Problem: an application thread arming timers in a loop took every
 * record from the pool's shared free stack, one CAS each on a line the
 * timer thread writes too when it frees records (W7's set-up: a quarter
 * of its time). Workers have had their own caches all along; other
 * threads come and go, use several runtimes, and may outlive a runtime,
 * so their caches need an owner for the records they hold.
 *
 * Design: each thread has one cache in thread-local storage, bound to
 * one runtime at a time. Binding (a thread's first timer on a runtime, or
 * its first after using another), thread exit (a pthread key destructor)
 * and a runtime's stop all take one process-wide lock: binding and exit
 * hand the cached records back to the runtime they came from, and a
 * stopping runtime detaches every cache bound to it before its pool goes
 * away, so a hand-back always finds its runtime alive. The fast path (the
 * cache is bound to this runtime) takes no lock: one relaxed load of the
 * binding (a thread reads its own binding; only a stop, under the lock,
 * clears it from outside) and a comparison of serials, so that a new
 * runtime allocated where a stopped one was is not taken for it. A thread
 * holds at most POOL_CACHE_CAP free records of the runtime it last armed
 * timers on, until it exits or arms on another runtime. The cache comes
 * with the thread's timer outbox (timer_outbox.c): unbinding sends what
 * it holds on to its runtime's timer thread first, and the timer thread
 * looks into the outboxes of the caches bound to its runtime under the
 * same lock, so none goes away under it.
 */
#include <pthread.h>

#include "thread_cache.h"
#include "timer_service.h"

typedef struct thread_cache {
    _Atomic(gs_runtime *) rt; /* bound runtime or NULL; written under caches_lock */
    uint64_t serial;          /* rt->serial at binding (the owner's) */
    struct thread_cache *prev, *next; /* in rt->thread_caches, under caches_lock */
    timer_arming timers;             /* its free records and held timers */
} thread_cache;

static pthread_mutex_t caches_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static bool key_made;

/* initial-exec like the runtime's other thread-locals: see internal.h. */
static _Thread_local thread_cache tl_cache __attribute__((tls_model("initial-exec")));

/* Under caches_lock: hands c's records back to the runtime it is bound
 * to, if any, and unbinds it. A cache a stop detached holds indices of a
 * pool that is gone: they are dropped. */
static void unbind_locked(thread_cache *c)
{
    gs_runtime *rt = atomic_load_explicit(&c->rt, memory_order_relaxed);
    if (rt != NULL) {
        outbox_flush(rt, &c->timers); /* held timers go on to the timer thread */
        for (uint32_t i = 0; i < c->timers.cache.n; i++)
            pool_free(&rt->timers->recs, c->timers.cache.idx[i]); /* rare: one at a time */
        if (c->prev != NULL)
            c->prev->next = c->next;
        else
            rt->thread_caches = c->next;
        if (c->next != NULL)
            c->next->prev = c->prev;
        c->prev = c->next = NULL;
        atomic_store_explicit(&c->rt, NULL, memory_order_relaxed);
    }
    timer_arming_init(&c->timers);
}

static void on_thread_exit(void *arg)
{
    pthread_mutex_lock(&caches_lock);
    unbind_locked(arg);
    pthread_mutex_unlock(&caches_lock);
}

static void make_key(void)
{
    key_made = pthread_key_create(&exit_key, on_thread_exit) == 0;
}

static bool bind(thread_cache *c, gs_runtime *rt)
{
    /* Without the exit hook a thread's records would be lost when it
     * exits: then no cache at all. */
    if (pthread_once(&key_once, make_key) != 0 || !key_made || pthread_setspecific(exit_key, c) != 0)
        return false;
    pthread_mutex_lock(&caches_lock);
    unbind_locked(c);
    c->serial = rt->serial;
    c->prev = NULL;
    c->next = rt->thread_caches;
    if (c->next != NULL)
        c->next->prev = c;
    rt->thread_caches = c;
    atomic_store_explicit(&c->rt, rt, memory_order_relaxed);
    pthread_mutex_unlock(&caches_lock);
    return true;
}

timer_arming *thread_timer_side(gs_runtime *rt)
{
    thread_cache *c = &tl_cache;
    /* relaxed: the owner reads its own binding; a concurrent change comes
     * only from a stop of rt itself, and using a runtime while it stops
     * is outside the contract (see gs_runtime_stop). */
    if (atomic_load_explicit(&c->rt, memory_order_relaxed) == rt && c->serial == rt->serial)
        return &c->timers;
    return bind(c, rt) ? &c->timers : NULL;
}

void thread_outboxes_take(gs_runtime *rt, uint64_t horizon_ns, outbox_chain *into, uint64_t *kept_min)
{
    pthread_mutex_lock(&caches_lock);
    for (thread_cache *c = rt->thread_caches; c != NULL; c = c->next)
        (void)outbox_take(&c->timers.outbox, horizon_ns, into, kept_min);
    pthread_mutex_unlock(&caches_lock);
}

void thread_caches_detach(gs_runtime *rt, outbox_chain *held)
{
    pthread_mutex_lock(&caches_lock);
    for (thread_cache *c = rt->thread_caches, *next; c != NULL; c = next) {
        next = c->next;
        c->prev = c->next = NULL;
        /* What it holds goes to the stop, which frees it: taken in the same
         * hold of the lock as the unbinding, so that a thread exiting now
         * finds its cache unbound and flushes nothing into the inbox after
         * the stop has drained it. Its owner drops the free indices at its
         * next binding (unbind_locked). */
        uint64_t kept_min = UINT64_MAX;
        (void)outbox_take(&c->timers.outbox, UINT64_MAX, held, &kept_min);
        atomic_store_explicit(&c->rt, NULL, memory_order_relaxed);
    }
    rt->thread_caches = NULL;
    pthread_mutex_unlock(&caches_lock);
}
