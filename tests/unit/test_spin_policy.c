/* test_spin_policy.c - unit tests of the idle workers' adaptive spin
 * (src/runtime/spin_policy.h), driven with made-up durations: wasted
 * spins shrink it to the floor and no further, work soon after a park
 * grows it back to the ceiling and no further, and work found while
 * spinning keeps it at least twice the wait. */
#include <criterion/criterion.h>

#include "runtime/spin_policy.h"

Test(spin_policy, wasted_spins_halve_down_to_the_floor, .timeout = 10)
{
    uint32_t s = SPIN_MAX_NS;
    s = spin_after_park(s, 125000);
    cr_assert_eq(s, SPIN_MAX_NS / 2, "a park longer than the longest spin: the spin was wasted");
    for (int i = 0; i < 40; i++)
        s = spin_after_park(s, 1000000);
    cr_assert_geq(s, SPIN_MIN_NS);
    cr_assert_lt(s, 2 * SPIN_MIN_NS, "it reaches the floor: %u", s);
    cr_assert_eq(spin_after_park(s, 1000000), s, "and stays there");
}

Test(spin_policy, work_soon_after_a_park_doubles_up_to_the_ceiling, .timeout = 10)
{
    uint32_t s = SPIN_MIN_NS;
    s = spin_after_park(s, 20000);
    cr_assert_eq(s, 2 * SPIN_MIN_NS, "work came within the longest spin");
    for (int i = 0; i < 40; i++)
        s = spin_after_park(s, 0);
    cr_assert_eq(s, SPIN_MAX_NS);
}

Test(spin_policy, work_found_while_spinning_keeps_twice_the_wait, .timeout = 10)
{
    cr_assert_eq(spin_after_found(SPIN_MIN_NS, 10000), 20000);
    cr_assert_eq(spin_after_found(30000, 1000), 30000, "a quick find does not shrink the spin");
    cr_assert_eq(spin_after_found(SPIN_MIN_NS, 10 * (uint64_t)SPIN_MAX_NS), SPIN_MAX_NS, "capped");
}
