/* idxstack.c - Treiber stack of indices with a 32-bit version counter in
 * the top word. ABA (pop reads the link of entry i, i is popped and pushed
 * back meanwhile, the CAS succeeds with a stale link) is prevented by the
 * version, which every push and pop increments: it would take 2^32
 * operations during one preempted pop to wrap. The link of an entry may be
 * read after another thread popped it; that is harmless because the
 * storage is type-stable and the stale value fails the CAS.
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
