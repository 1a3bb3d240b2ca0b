/* alloc.c - the fault-injection switch of alloc.h. */
#include "alloc.h"

_Atomic long alloc_countdown = -1;
static _Atomic long start_value = -1;

void alloc_fail_after(long n)
{
    atomic_store_explicit(&start_value, n, memory_order_relaxed);
    atomic_store_explicit(&alloc_countdown, n, memory_order_relaxed);
}

long alloc_attempts(void)
{
    long start = atomic_load_explicit(&start_value, memory_order_relaxed);
    long now = atomic_load_explicit(&alloc_countdown, memory_order_relaxed);
    return start < 0 ? 0 : start - now;
}
