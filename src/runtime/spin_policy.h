/* spin_policy.h - how long an idle worker spins before it parks.
 *
 * Problem: spinning catches work that comes within microseconds (a reply
 * from an outside thread, a message from the other worker) without a
 * futex wake-up, which costs tens of microseconds under a hypervisor. But
 * work that comes on a timer's schedule (W7 fires a batch every 125 us)
 * arrives after any spin has given up, so every spin is wasted: 50 us of
 * a CPU per batch, a fifth of W7's delivery CPU.
 *
 * Design: each worker adapts its spin between SPIN_MIN_NS and SPIN_MAX_NS
 * by what it saw, like an adaptive mutex. Work found while spinning after
 * w ns keeps the spin at least 2w. A spin that gave up is judged by the
 * park that followed: work within SPIN_MAX_NS means a longer spin would
 * have caught it (double); later work means the spin was wasted (halve).
 * Pure functions, so that tests drive them without a clock.
 */
#ifndef GS_RUNTIME_SPIN_POLICY_H
#define GS_RUNTIME_SPIN_POLICY_H

#include <stdint.h>

#define SPIN_MAX_NS 50000u /* the longest spin, and the first */
#define SPIN_MIN_NS 4000u  /* the shortest: about one round of looking */

/* The spin after one that found work waited_ns after it began. */
static inline uint32_t spin_after_found(uint32_t spin_ns, uint64_t waited_ns)
{
    uint64_t want = waited_ns * 2;
    if (want > SPIN_MAX_NS)
        want = SPIN_MAX_NS;
    return want > spin_ns ? (uint32_t)want : spin_ns;
}

/* The spin after one that gave up and a park that lasted parked_ns. */
static inline uint32_t spin_after_park(uint32_t spin_ns, uint64_t parked_ns)
{
    if (parked_ns < SPIN_MAX_NS)
        return spin_ns * 2 < SPIN_MAX_NS ? spin_ns * 2 : SPIN_MAX_NS;
    return spin_ns / 2 >= SPIN_MIN_NS ? spin_ns / 2 : spin_ns;
}

#endif
