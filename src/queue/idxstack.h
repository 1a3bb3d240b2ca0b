/* idxstack.h - lock-free LIFO free list of 32-bit indices (Treiber stack
 * with a version tag against ABA). The links live in the caller's
 * type-stable storage (never freed while the stack is in use), reached
 * through a callback, so the stack itself is one 64-bit word.
 *
 * Any thread may push and pop concurrently.
 */
#ifndef GS_QUEUE_IDXSTACK_H
#define GS_QUEUE_IDXSTACK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct idxstack {
    _Atomic uint64_t top; /* version << 32 | (index + 1); low half 0 = empty */
} idxstack;

/* Returns the link word of entry idx. */
typedef _Atomic uint32_t *(*idxstack_link_fn)(void *ctx, uint32_t idx);

void idxstack_init(idxstack *s);
void idxstack_push(idxstack *s, uint32_t idx, idxstack_link_fn link, void *ctx);
bool idxstack_pop(idxstack *s, uint32_t *idx, idxstack_link_fn link, void *ctx);

/* Pushes n >= 1 entries with one CAS (they come off in the order given). */
void idxstack_push_many(idxstack *s, const uint32_t *idx, uint32_t n, idxstack_link_fn link, void *ctx);

/* Pops up to max entries with one CAS; returns how many (0: empty). */
uint32_t idxstack_pop_many(idxstack *s, uint32_t *out, uint32_t max, idxstack_link_fn link, void *ctx);

#endif
