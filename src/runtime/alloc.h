/* alloc.h - the one allocator hook every allocation of the runtime goes
 * through, so that tests can make the Nth allocation fail (fault
 * injection) and check that each API call then fails cleanly with
 * GS_ENOMEM, delivers nothing by halves and leaks nothing.
 *
 * alloc_fail_after(n): the next n allocations succeed, the one after
 * fails, and so do all later ones until alloc_fail_after(-1) turns
 * injection off (the default). Any thread; meant for tests only.
 */
#ifndef GS_RUNTIME_ALLOC_H
#define GS_RUNTIME_ALLOC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

extern _Atomic long alloc_countdown; /* < 0: off */

static inline int alloc_should_fail(void)
{
    /* relaxed: a test switch; the common case is one load of a value that
     * never changes outside tests. */
    if (__builtin_expect(atomic_load_explicit(&alloc_countdown, memory_order_relaxed) < 0, 1))
        return 0;
    return atomic_fetch_sub_explicit(&alloc_countdown, 1, memory_order_relaxed) <= 0;
}

static inline void *gs_malloc(size_t n)
{
    return alloc_should_fail() ? NULL : malloc(n);
}

static inline void *gs_calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : calloc(n, size);
}

static inline void *gs_realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : realloc(p, n);
}

static inline void *gs_aligned_alloc(size_t align, size_t n)
{
    return alloc_should_fail() ? NULL : aligned_alloc(align, n);
}

void alloc_fail_after(long n);
/* How many allocations were attempted since the last alloc_fail_after. */
long alloc_attempts(void);

#endif
