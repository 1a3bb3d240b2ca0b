/* deadline_clock.c - a cheap clock for computing deadlines.
 *
 * Problem: every timer armed and every call made with a timeout reads
 * CLOCK_MONOTONIC to compute its deadline: 24 ns through the vDSO on
 * these machines, a quarter of what arming a timer costs. A deadline may
 * be computed from a clock that runs a little *ahead* (the timer is then
 * a little late), never from one that lags (it would fire early).
 *
 * Design (x86-64, when the kernel itself keeps time with the TSC): the
 * clock extrapolates from a base pair (TSC, CLOCK_MONOTONIC) for at most
 * REBASE_NS, with a rate measured over windows of at least CALIBRATE_NS
 * and raised by 1/1024 (about 1,000 ppm, more than NTP ever slews the
 * monotonic clock). The base pair is read TSC first, so its monotonic
 * half is, if anything, later than the TSC instant. Hence extrapolation
 * never lags: the result is CLOCK_MONOTONIC or up to ~3 us ahead. The
 * first thread to find the base stale reads the real clock and, if it
 * wins a CAS on the sequence word, moves the base (a seqlock: readers go
 * to the real clock while a move is under way). A pair is used only if
 * read within TIGHT_NS (a preempted reader would skew the rate). Each
 * move also checks the last extrapolation against the real clock; if it
 * ever lagged by more than the read jitter, the TSC is not trusted again
 * and every read goes to CLOCK_MONOTONIC. Under kvm-clock the TSC is
 * used when the host vouches for it (see decide). Elsewhere (another
 * clock source, another architecture) it is CLOCK_MONOTONIC.
 */
#define _GNU_SOURCE
#include "deadline_clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "futex.h"

#if defined(__x86_64__)
#include <x86intrin.h>

#define REBASE_NS 1000000u      /* extrapolate at most this far */
#define CALIBRATE_NS 20000000u  /* measure the rate over at least this */
#define RATE_MARGIN_SHIFT 10    /* use the measured rate plus 1/1024 */
#define LAG_TOLERANCE_NS 2000u  /* read jitter allowed before the TSC is distrusted */
#define TIGHT_NS 2000u          /* a (TSC, monotonic) pair is read within this, or not used */
#define CUSHION_NS 100u         /* added to extrapolations: an unfenced TSC read, the shift's truncation */

static struct {
    _Atomic uint32_t seq; /* odd while the base moves */
    _Atomic uint64_t tsc_base, mono_base;
    _Atomic uint64_t mult;      /* ns per TSC tick << 32, margin included; 0 until measured */
    _Atomic uint64_t max_ticks; /* REBASE_NS in ticks */
    /* the writer's (whoever holds seq odd) */
    uint64_t cal_tsc, cal_mono;
} dc;

static pthread_once_t decide_once = PTHREAD_ONCE_INIT;
static atomic_bool tsc_trusted;
static atomic_bool decided; /* decide() has run */

/* Whether the vDSO answers CLOCK_MONOTONIC without entering the kernel:
 * the cheapest of a few reads takes less than any system call does
 * (a kvm-clock read through the vDSO is 25-30 ns on these VMs, the
 * system call 1.2 us; a bare-metal system call is not under 60 ns with
 * today's mitigations). */
#define VDSO_READ_MAX_NS 60u
static bool monotonic_read_in_vdso(void)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 64; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        clock_gettime(CLOCK_MONOTONIC, &b);
        uint64_t d = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec - (uint64_t)a.tv_nsec;
        if (d < best)
            best = d;
    }
    return best < VDSO_READ_MAX_NS;
}

/* Whether the TSC is constant-rate and synchronized across CPUs:
 *   - the kernel keeps time with it ("tsc"): it checked both;
 *   - or the kernel keeps time with kvm-clock and the vDSO reads it. The
 *     vDSO reads kvm-clock only when the host sets PVCLOCK_TSC_STABLE_BIT,
 *     its promise that the guest's TSCs are synchronized (the vDSO reads
 *     one vCPU's clock parameters with any vCPU's TSC, so it relies on
 *     that itself); without the bit every read is a system call.
 * The extrapolation is still checked against the real clock at every
 * move of the base (read_and_rebase). */
static void decide(void)
{
    char name[32] = "";
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
    if (f != NULL) {
        if (fgets(name, sizeof name, f) == NULL)
            name[0] = '\0';
        fclose(f);
    }
    bool trusted = strcmp(name, "tsc\n") == 0 || (strcmp(name, "kvm-clock\n") == 0 && monotonic_read_in_vdso());
    atomic_store_explicit(&tsc_trusted, trusted, memory_order_release);
    atomic_store_explicit(&decided, true, memory_order_release);
}

static inline uint64_t tsc_ordered(void)
{
    /* lfence: the TSC is read after everything before it, as the kernel's
     * own clock reads do. For the base pair only (see tsc_now). */
    _mm_lfence();
    return __rdtsc();
}

/* The TSC without a fence (an lfence costs as much as the vDSO's whole
 * clock read): the read may run a little ahead of the instructions
 * before it, by at most the few cycles an out-of-order core issues it
 * early; CUSHION_NS, added to every extrapolation, covers that. */
static inline uint64_t tsc_now(void)
{
    return __rdtsc();
}

/* Reads the real clock, and moves the base if it is stale and nobody
 * else is moving it. */
static uint64_t read_and_rebase(void)
{
    uint64_t m0 = now_ns();
    uint32_t s = atomic_load_explicit(&dc.seq, memory_order_relaxed);
    uint64_t mono_base = atomic_load_explicit(&dc.mono_base, SEQ_FIELD_LOAD);
    if ((s & 1) != 0 || (mono_base != 0 && m0 - mono_base < REBASE_NS / 2))
        return m0;
    /* acquire: the writer's reads of the calibration below come after it
     * owns the sequence word. */
    if (!atomic_compare_exchange_strong_explicit(&dc.seq, &s, s + 1, memory_order_acquire, memory_order_relaxed))
        return m0;
    /* release: the field stores below are not seen before the odd seq. */
    SEQ_FENCE(memory_order_release);
    /* The pair: TSC first, so the monotonic half is not earlier than the
     * TSC instant; m0 <= (that instant) <= m. A pair more than TIGHT_NS
     * apart (the thread was preempted) would skew the rate: not used. */
    uint64_t t = tsc_ordered();
    uint64_t m = now_ns();
    if (m - m0 <= TIGHT_NS) {
        uint64_t mult = atomic_load_explicit(&dc.mult, SEQ_FIELD_LOAD);
        uint64_t tsc_base = atomic_load_explicit(&dc.tsc_base, SEQ_FIELD_LOAD);
        if (mult != 0 && t - tsc_base <= atomic_load_explicit(&dc.max_ticks, SEQ_FIELD_LOAD)) {
            /* The extrapolation for instant t must not be below m0. */
            uint64_t predicted = mono_base + (((t - tsc_base) * mult) >> 32) + 1;
            if (predicted + LAG_TOLERANCE_NS < m0)
                atomic_store_explicit(&tsc_trusted, false, memory_order_relaxed);
        }
        if (dc.cal_tsc == 0 || t <= dc.cal_tsc) {
            dc.cal_tsc = t;
            dc.cal_mono = m;
        } else if (m - dc.cal_mono >= CALIBRATE_NS) {
            uint64_t dm = m - dc.cal_mono, dt = t - dc.cal_tsc;
            uint64_t rate = (uint64_t)(((unsigned __int128)dm << 32) / dt);
            rate += (rate >> RATE_MARGIN_SHIFT) + 1;
            atomic_store_explicit(&dc.mult, rate, SEQ_FIELD_STORE);
            atomic_store_explicit(&dc.max_ticks, (uint64_t)(((unsigned __int128)REBASE_NS << 32) / rate),
                                  SEQ_FIELD_STORE);
            dc.cal_tsc = t;
            dc.cal_mono = m;
        }
        atomic_store_explicit(&dc.tsc_base, t, SEQ_FIELD_STORE);
        atomic_store_explicit(&dc.mono_base, m, SEQ_FIELD_STORE);
    }
    atomic_store_explicit(&dc.seq, s + 2, memory_order_release); /* the move is complete */
    return m;
}

/* The latest reading this thread got. An extrapolation runs up to a few
 * microseconds ahead, and the next reading from a fresh base (or from
 * CLOCK_MONOTONIC) may then be earlier: a thread's readings go no
 * further back than the latest, so that two timers it arms in order with
 * the same delay get deadlines in order (the header promises their
 * order). Still never behind CLOCK_MONOTONIC: the latest reading was not,
 * when it was read. */
static _Thread_local uint64_t tl_latest_ns __attribute__((tls_model("initial-exec")));

static inline uint64_t not_before_latest(uint64_t ns)
{
    if (ns < tl_latest_ns)
        return tl_latest_ns;
    tl_latest_ns = ns;
    return ns;
}

uint64_t deadline_clock_ns(void)
{
    /* acquire: pairs with decide's release, so tsc_trusted is its verdict;
     * saves the pthread_once call on every read after the first. */
    if (__builtin_expect(!atomic_load_explicit(&decided, memory_order_acquire), 0))
        pthread_once(&decide_once, decide);
    if (!atomic_load_explicit(&tsc_trusted, memory_order_relaxed))
        return now_ns();
    /* Seqlock read: acquire on the first seq load, an acquire fence
     * before the second, so the fields read belong to one base. */
    uint32_t s = atomic_load_explicit(&dc.seq, memory_order_acquire);
    uint64_t tsc_base = atomic_load_explicit(&dc.tsc_base, SEQ_FIELD_LOAD);
    uint64_t mono_base = atomic_load_explicit(&dc.mono_base, SEQ_FIELD_LOAD);
    uint64_t mult = atomic_load_explicit(&dc.mult, SEQ_FIELD_LOAD);
    uint64_t max_ticks = atomic_load_explicit(&dc.max_ticks, SEQ_FIELD_LOAD);
    SEQ_FENCE(memory_order_acquire);
    if ((s & 1) == 0 && mult != 0 && atomic_load_explicit(&dc.seq, memory_order_relaxed) == s) {
        uint64_t d = tsc_now() - tsc_base; /* a TSC behind the base wraps: stale */
        if (d <= max_ticks)
            return not_before_latest(mono_base + ((d * mult) >> 32) + CUSHION_NS);
    }
    return not_before_latest(read_and_rebase());
}

#else

uint64_t deadline_clock_ns(void)
{
    return now_ns();
}

#endif
