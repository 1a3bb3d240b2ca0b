/* stress_fiber_switch: the hand-written context switch (src/runtime/fiber.c)
 * alone, without the runtime: two fibers and the thread's own stack pass
 * control back and forth a million times while each keeps integer and
 * floating-point values live across the switches (so they sit in
 * callee-saved registers, which the switch must preserve), checks its
 * stack alignment, and recurses a little on its stack between switches.
 *
 * Built with the native compiler as part of the stress programs, and by
 * `make test-aarch64` for aarch64 (cross-compiled, run under qemu-user),
 * since the aarch64 switch has no other test on x86-64 machines.
 * Exit status 0 if every check held.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fiber.h"

#define ROUNDS 1000000L

typedef struct fiber_result {
    uint64_t ints;   /* integer accumulator, kept live across switches */
    double floats;   /* floating-point accumulator, ditto */
    long rounds;     /* switches seen */
    long misaligned; /* entries with a badly aligned stack */
    uint64_t depth;  /* sum of a recursion's results */
} fiber_result;

static fiber_home home;
static fiber_result results[2];

/* Some real stack use between switches; noinline so it has frames. */
__attribute__((noinline)) static uint64_t recurse(uint64_t n, volatile char *prev)
{
    volatile char pad[96];
    pad[0] = (char)n;
    pad[95] = prev != NULL ? prev[0] : 0;
    return n == 0 ? (uint64_t)(unsigned char)pad[95] : n + recurse(n - 1, pad);
}

static int aligned_16(void)
{
    _Alignas(16) volatile char probe[16];
    probe[0] = 1;
    return ((uintptr_t)probe & 15) == 0;
}

void fiber_body(fiber *f)
{
    fiber_first_arrival();
    fiber_result *r = (fiber_result *)f->proc; /* the test stores its slot there */
    uint64_t a = 0x9E3779B97F4A7C15u, b = 1;
    double x = 1.0, y = 0.5;
    for (;;) {
        a = a * 6364136223846793005u + 1442695040888963407u;
        b += a >> 60;
        x = x * 1.0000001 + y;
        y = y * 0.999999;
        r->misaligned += !aligned_16();
        if ((r->rounds & 1023) == 0)
            r->depth += recurse(40, NULL);
        r->rounds++;
        r->ints = a ^ b;
        r->floats = x + y;
        fiber_leave(fiber_current_home(), f);
    }
}

/* What fiber_body computes after n rounds, computed here without fibers. */
static void expected(long n, uint64_t *ints, double *floats)
{
    uint64_t a = 0x9E3779B97F4A7C15u, b = 1;
    double x = 1.0, y = 0.5;
    for (long i = 0; i < n; i++) {
        a = a * 6364136223846793005u + 1442695040888963407u;
        b += a >> 60;
        x = x * 1.0000001 + y;
        y = y * 0.999999;
    }
    *ints = a ^ b;
    *floats = x + y;
}

int main(void)
{
    fiber_pool *pool;
    if (fiber_pool_create(&pool) != 0) {
        fprintf(stderr, "stress_fiber_switch: no pool\n");
        return 1;
    }
    fiber_home_init(&home);
    fiber *f[2];
    for (int i = 0; i < 2; i++) {
        f[i] = fiber_get(pool);
        if (f[i] == NULL) {
            fprintf(stderr, "stress_fiber_switch: no fiber\n");
            return 1;
        }
        f[i]->proc = (struct proc *)(void *)&results[i];
    }
    /* The home side keeps its own values live across every switch too. */
    uint64_t mine = 12345;
    double mine_f = 3.25;
    for (long k = 0; k < ROUNDS; k++) {
        fiber_enter(&home, f[k & 1]);
        mine = mine * 3 + 1;
        mine_f = mine_f * 0.5 + 1.0;
    }
    uint64_t want_mine = 12345;
    double want_mine_f = 3.25;
    for (long k = 0; k < ROUNDS; k++) {
        want_mine = want_mine * 3 + 1;
        want_mine_f = want_mine_f * 0.5 + 1.0;
    }
    int bad = 0;
    if (mine != want_mine || mine_f != want_mine_f) {
        fprintf(stderr, "stress_fiber_switch: the home context's values changed across switches\n");
        bad = 1;
    }
    uint64_t want_ints;
    double want_floats;
    expected(ROUNDS / 2, &want_ints, &want_floats);
    /* recurse(40) = 40 + 39 + ... + 1, plus the 1 its last frame reads from its caller's */
    uint64_t want_depth = (ROUNDS / 2 + 1023) / 1024 * (40u * 41u / 2 + 1);
    for (int i = 0; i < 2; i++) {
        fiber_result *r = &results[i];
        if (r->rounds != ROUNDS / 2 || r->ints != want_ints || r->floats != want_floats ||
            r->misaligned != 0 || r->depth != want_depth) {
            fprintf(stderr,
                    "stress_fiber_switch: fiber %d: rounds %ld (want %ld), ints %s, floats %s, "
                    "misaligned %ld, recursion %s\n",
                    i, r->rounds, ROUNDS / 2, r->ints == want_ints ? "ok" : "WRONG",
                    r->floats == want_floats ? "ok" : "WRONG", r->misaligned,
                    r->depth == want_depth ? "ok" : "WRONG");
            bad = 1;
        }
    }
    /* The fibers are parked mid-loop; their stacks go back with the pool. */
    fiber_pool_destroy(pool);
    if (!bad)
        printf("stress_fiber_switch: %ld switches in, %ld out, registers and alignment kept\n", ROUNDS, ROUNDS);
    return bad;
}
