/* stress_common.h - helpers shared by the plain-main stress programs.
 *
 * The stress programs run under ThreadSanitizer, where Criterion cannot
 * start, so they are ordinary programs: a failed check prints file:line
 * and the reason on stderr and exits with status 1. Correctness never
 * depends on timing; a watchdog alarm only turns a hang into a failure.
 */
#ifndef STRESS_COMMON_H
#define STRESS_COMMON_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "genserver.h"

/* Fails the program when `cond` is false. Usable from any thread. */
#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,    \
                    #cond);                                                     \
            fflush(stderr);                                                     \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

/* Like CHECK, with a printf-style explanation. */
#define CHECKF(cond, ...)                                                       \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__,    \
                    #cond);                                                     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            fflush(stderr);                                                     \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

/* Fails unless `expr` (a genserver status) equals `want`. */
#define CHECK_RC(expr, want)                                                    \
    do {                                                                        \
        int rc_ = (expr);                                                       \
        int want_ = (want);                                                     \
        if (rc_ != want_) {                                                     \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n",   \
                    __FILE__, __LINE__, #expr, rc_, gs_strerror(rc_), want_,    \
                    gs_strerror(want_));                                        \
            fflush(stderr);                                                     \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

/* Fails unless the status `rc` is one of two accepted values. */
#define CHECK_RC2(rc, a, b)                                                     \
    do {                                                                        \
        int rc_ = (rc);                                                         \
        if (rc_ != (a) && rc_ != (b)) {                                         \
            fprintf(stderr, "%s:%d: %s is %d (%s), expected %s or %s\n",        \
                    __FILE__, __LINE__, #rc, rc_, gs_strerror(rc_), #a, #b);    \
            fflush(stderr);                                                     \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

/* A hang is a failure: the default SIGALRM action ends the process. */
static inline void stress_watchdog(unsigned seconds)
{
    alarm(seconds);
}

/* xorshift64*: a small per-thread PRNG (never share one between threads). */
static inline uint64_t stress_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t stress_seed(uint64_t n)
{
    return 0x9E3779B97F4A7C15ULL * (n + 1) | 1;
}

static inline double stress_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps for `us` microseconds (used only to vary interleavings). */
static inline void stress_sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Replaces a random one of the n servers in `servers` with a fresh server
 * of ops, started before the old one is stopped (so the slot always
 * names a server that is live or just stopping). From one thread. */
static inline void stress_replace_random(gs_runtime *rt, _Atomic gs_pid *servers, unsigned n,
                                         const gs_server_ops *ops, uint64_t *seed)
{
    unsigned k = (unsigned)(stress_rand(seed) % n);
    gs_pid old = atomic_load(&servers[k]);
    gs_pid fresh;
    CHECK_RC(gs_start(rt, ops, NULL, &fresh), GS_OK);
    atomic_store(&servers[k], fresh);
    CHECK_RC(gs_stop(rt, old, GS_NORMAL, 5000), GS_OK);
}

#endif /* STRESS_COMMON_H */
