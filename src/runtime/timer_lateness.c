/* timer_lateness.c - how late the timer thread fires timers.
 *
 * Problem: a timer delivered late is late either because the timer
 * thread fired it late (it woke late, or the host or other threads kept
 * it off a CPU) or because its server took long to get to the message.
 * Users watching a runtime, and the benchmarks (W7, W8), need the two
 * apart: the second is the server's load, the first the runtime's.
 *
 * Design: a log-linear histogram (as HdrHistogram, with 3 bits below the
 * leading one: buckets an eighth of their power of two wide), one counter
 * per bucket, written by the timer thread alone with a plain load and
 * store, so a note costs a few instructions and no atomic read-modify-
 * write. The clock it notes against is read at the start of each firing
 * round and again every LATENESS_CLOCK_EVERY timers: a round that fires
 * thousands of timers after a stall takes hundreds of microseconds, and
 * the last of them would otherwise look as late as the first.
 */
#include "timer_lateness.h"

#include "futex.h"

_Static_assert(GS_LATENESS_BUCKETS == 2 + (33 - LATENESS_FIRST_SHIFT) * (1 << LATENESS_SUB_BITS),
               "one bucket under 2^10 ns, eight per power of two up to 2^33 ns, one for everything later");

void lateness_init(timer_lateness *l)
{
    atomic_init(&l->max_ns, 0);
    for (unsigned i = 0; i < GS_LATENESS_BUCKETS; i++)
        atomic_init(&l->buckets[i], 0);
    l->clock_ns = 0;
    l->notes_since_read = 0;
}

/* The bucket's upper bound (exclusive); UINT64_MAX for the last. */
static uint64_t bucket_upper_ns(unsigned b)
{
    if (b == 0)
        return UINT64_C(1) << LATENESS_FIRST_SHIFT;
    if (b >= GS_LATENESS_BUCKETS - 1)
        return UINT64_MAX;
    unsigned e = LATENESS_FIRST_SHIFT + (b - 1) / (1u << LATENESS_SUB_BITS);
    uint64_t sub = (b - 1) % (1u << LATENESS_SUB_BITS);
    return ((UINT64_C(1) << LATENESS_SUB_BITS) + sub + 1) << (e - LATENESS_SUB_BITS);
}

void lateness_round(timer_lateness *l, uint64_t now)
{
    l->clock_ns = now;
    l->notes_since_read = 0;
}

void lateness_clock_again(timer_lateness *l)
{
    l->notes_since_read = 0;
    uint64_t now = now_ns();
    if (now > l->clock_ns)
        l->clock_ns = now;
}

uint64_t gs_timer_lateness_percentile(const gs_timer_lateness *l, uint64_t num, uint64_t den)
{
    if (l == NULL || den == 0 || num > den)
        return 0;
    uint64_t total = 0;
    for (unsigned b = 0; b < GS_LATENESS_BUCKETS; b++)
        total += l->buckets[b];
    if (total == 0)
        return 0;
    /* Nearest rank: the smallest value with at least num/den of them at
     * or under it (rank 1 for num 0). */
    unsigned __int128 scaled = (unsigned __int128)total * num;
    uint64_t rank = (uint64_t)((scaled + den - 1) / den);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < GS_LATENESS_BUCKETS; b++) {
        seen += l->buckets[b];
        if (seen >= rank) {
            uint64_t upper = bucket_upper_ns(b);
            return l->max_ns != 0 && upper > l->max_ns ? l->max_ns : upper;
        }
    }
    return l->max_ns; /* not reached: seen ends at total */
}
