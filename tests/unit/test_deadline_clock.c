/* The deadline clock (src/runtime/deadline_clock.c): never behind
 * CLOCK_MONOTONIC, and only a few microseconds ahead, from any thread,
 * across its calibration and the moves of its base. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "runtime/deadline_clock.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define AHEAD_MAX_NS 10000u /* see the bound in deadline_clock.c: ~3 us */

typedef struct result {
    uint64_t reads, behind, too_far_ahead, worst_behind, worst_ahead;
} result;

/* Reads for `ms` milliseconds, each between two CLOCK_MONOTONIC reads. */
static void *check_reads(void *arg)
{
    result *r = arg;
    uint64_t end = mono_ns() + 300u * 1000000u; /* past several calibrations */
    for (;;) {
        uint64_t before = mono_ns();
        uint64_t d = deadline_clock_ns();
        uint64_t after = mono_ns();
        r->reads++;
        if (d < before) {
            r->behind++;
            if (before - d > r->worst_behind)
                r->worst_behind = before - d;
        } else if (d > after + AHEAD_MAX_NS) {
            r->too_far_ahead++;
            if (d - after > r->worst_ahead)
                r->worst_ahead = d - after;
        }
        if (after >= end)
            break;
        if ((r->reads & 1023) == 0) {
            /* Now and then a pause, so that bases go stale. */
            struct timespec ts = {0, 1500000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

Test(deadline_clock, never_behind_the_monotonic_clock_and_barely_ahead, .timeout = 30)
{
    result r[3] = {{0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, check_reads, &r[i]), 0);
    check_reads(&r[2]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) {
        cr_assert_gt(r[i].reads, 1000u);
        cr_assert_eq(r[i].behind, 0u, "thread %d: %llu of %llu reads behind CLOCK_MONOTONIC (worst by %llu ns)", i,
                     (unsigned long long)r[i].behind, (unsigned long long)r[i].reads,
                     (unsigned long long)r[i].worst_behind);
        /* The value stands for an instant before `after`: even a
         * preemption cannot push it further ahead. */
        cr_assert_eq(r[i].too_far_ahead, 0u,
                     "thread %d: %llu of %llu reads more than %u ns ahead (worst %llu ns)", i,
                     (unsigned long long)r[i].too_far_ahead, (unsigned long long)r[i].reads, AHEAD_MAX_NS,
                     (unsigned long long)r[i].worst_ahead);
    }
}

/* Nor does it go back within a thread: a timer armed after another with
 * the same delay must not get an earlier deadline (the header promises
 * their order). The extrapolation runs up to a few microseconds ahead, and
 * a move of the base to a fresh CLOCK_MONOTONIC reading used to step the
 * next reading back by as much (about 900 steps a second, up to 1.2 us,
 * in a tight loop; found by an adversarial run). */
typedef struct backwards {
    uint64_t reads, steps_back, worst_ns;
} backwards;

static void *count_steps_back(void *arg)
{
    backwards *b = arg;
    uint64_t end = mono_ns() + 200u * 1000000u, last = deadline_clock_ns();
    for (;;) {
        for (int i = 0; i < 4096; i++) {
            uint64_t d = deadline_clock_ns();
            if (d < last) {
                b->steps_back++;
                if (last - d > b->worst_ns)
                    b->worst_ns = last - d;
            }
            last = d;
        }
        b->reads += 4096;
        if (mono_ns() >= end)
            break;
    }
    return NULL;
}

Test(deadline_clock, never_goes_back_within_a_thread, .timeout = 30)
{
    backwards b[2] = {{0}};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, count_steps_back, &b[0]), 0);
    count_steps_back(&b[1]);
    pthread_join(th, NULL);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(b[i].steps_back, 0u, "thread %d: %llu of %llu reads went back (worst by %llu ns)", i,
                     (unsigned long long)b[i].steps_back, (unsigned long long)b[i].reads,
                     (unsigned long long)b[i].worst_ns);
}
