/* idxstack.c - Treiber stack of indices with a 32-bit version counter in
 * the top word. ABA (pop reads the link of entry i, i is popped and pushed
 * back meanwhile, the CAS succeeds with a stale link) is prevented by the
 * version, which every push and pop increments: it would take 2^32
 * operations during one preempted pop to wrap. The link of an entry may be
 * read after another thread popped it; that is harmless because the
 * storage is type-stable and the stale value fails the CAS.
 *
 * The _many variants move a run of entries with one CAS. A push links the
 * run first (entries nobody else sees yet), then swings top to its head.
 * A pop walks up to max links down from top and swings top past the run:
 * if the CAS succeeds, top did not change since it was read (the version
 * moves with every operation), so no entry of the run was popped or
 * pushed meanwhile and the links walked were the stack's. A walk that
 * raced may read stale links; every link ever stored is an index + 1 or
 * 0, so it stays in bounds, and its CAS fails.
 */
#include "idxstack.h"

void idxstack_init(idxstack *s)
{
    atomic_init(&s->top, 0);
}

void idxstack_push(idxstack *s, uint32_t idx, idxstack_link_fn link, void *ctx)
{
    _Atomic uint32_t *my_link = link(ctx, idx);
    uint64_t top = atomic_load_explicit(&s->top, memory_order_relaxed);
    uint64_t next;
    do {
        atomic_store_explicit(my_link, (uint32_t)top, memory_order_relaxed);
        next = ((top >> 32) + 1) << 32 | (uint64_t)(idx + 1);
        /* release: the link store and whatever the caller wrote to the
         * entry before freeing it happen before the popper's acquire. */
    } while (!atomic_compare_exchange_weak_explicit(&s->top, &top, next, memory_order_release,
                                                    memory_order_relaxed));
}

bool idxstack_pop(idxstack *s, uint32_t *idx, idxstack_link_fn link, void *ctx)
{
    /* acquire: pairs with the pusher's release, so the link we read is the
     * one it stored. */
    uint64_t top = atomic_load_explicit(&s->top, memory_order_acquire);
    for (;;) {
        uint32_t low = (uint32_t)top;
        if (low == 0)
            return false;
        uint32_t link_value = atomic_load_explicit(link(ctx, low - 1), memory_order_relaxed);
        uint64_t next = ((top >> 32) + 1) << 32 | link_value;
        if (atomic_compare_exchange_weak_explicit(&s->top, &top, next, memory_order_acquire,
                                                  memory_order_acquire)) {
            *idx = low - 1;
            return true;
        }
    }
}

void idxstack_push_many(idxstack *s, const uint32_t *idx, uint32_t n, idxstack_link_fn link, void *ctx)
{
    for (uint32_t i = 0; i + 1 < n; i++)
        atomic_store_explicit(link(ctx, idx[i]), idx[i + 1] + 1, memory_order_relaxed);
    _Atomic uint32_t *last_link = link(ctx, idx[n - 1]);
    uint64_t top = atomic_load_explicit(&s->top, memory_order_relaxed);
    uint64_t next;
    do {
        atomic_store_explicit(last_link, (uint32_t)top, memory_order_relaxed);
        next = ((top >> 32) + 1) << 32 | (uint64_t)(idx[0] + 1);
        /* release: as in idxstack_push, for every link of the run. */
    } while (!atomic_compare_exchange_weak_explicit(&s->top, &top, next, memory_order_release,
                                                    memory_order_relaxed));
}

uint32_t idxstack_pop_many(idxstack *s, uint32_t *out, uint32_t max, idxstack_link_fn link, void *ctx)
{
    if (max == 0)
        return 0;
    /* acquire: pairs with every pusher's release (their CASes form one
     * release sequence on top), so the links below top are visible. */
    uint64_t top = atomic_load_explicit(&s->top, memory_order_acquire);
    for (;;) {
        uint32_t low = (uint32_t)top;
        if (low == 0)
            return 0;
        uint32_t n = 0, at = low;
        while (n < max && at != 0) {
            out[n++] = at - 1;
            at = atomic_load_explicit(link(ctx, at - 1), memory_order_relaxed);
        }
        uint64_t next = ((top >> 32) + 1) << 32 | at;
        if (atomic_compare_exchange_weak_explicit(&s->top, &top, next, memory_order_acquire,
                                                  memory_order_acquire))
            return n;
    }
}
