/* futex.c - Linux futex wrappers. FUTEX_WAIT_BITSET takes an absolute
 * deadline on CLOCK_MONOTONIC (the default clock for the bitset variant),
 * so a wait that is interrupted and restarted never extends the deadline.
 * Private futexes: every waiter is in this process. */
#define _GNU_SOURCE
#include "futex.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

int futex_wait_until(_Atomic uint32_t *word, uint32_t expected, const struct timespec *deadline)
{
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected,
                     deadline, NULL, FUTEX_BITSET_MATCH_ANY);
    return r == 0 ? 0 : -1;
}

void futex_wake(_Atomic uint32_t *word, int count)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, count, NULL, NULL, 0);
}
