/* chunk_map.c - see chunk_map.h: big pool chunks, mapped in the page size
 * this machine brings in faster, by measurement.
 *
 * A populated chunk is timed from mmap to the end of a pass that writes
 * one byte of every 4 KiB page. The pass is what makes the two backings
 * comparable: after MADV_POPULATE_WRITE the guest's page tables are
 * filled, but a host with shadow page tables still takes a fault per
 * 4 KiB page on first use, which would otherwise land, unmeasured, on the
 * thread that first writes each record. The pass costs a TLB miss per
 * page where there is no such fault (some 50 us per 2 MiB), and on such
 * a host it only moves a cost the chunk's first user would pay anyway.
 */
#define _GNU_SOURCE
#include "chunk_map.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#include "alloc.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels fail it, pages then come on first touch */
#endif

#define TOUCH_STRIDE 4096u

/* Process-wide measurements: a property of the machine, shared by every
 * pool and runtime. All relaxed: they steer a heuristic and publish no
 * memory. Pools growing at once on two threads may overwrite each
 * other's entry of a window, or both take the same turn; either only
 * delays the choice by a chunk. */
static _Atomic uint64_t measured_chunks[2];
static _Atomic uint64_t recent_ns[2][CHUNK_COST_WINDOW];
static _Atomic uint64_t populated; /* chunks handed out populated, for the re-probes */

uint64_t chunk_cost_of(const uint64_t recent[CHUNK_COST_WINDOW], uint64_t n)
{
    uint64_t k = n < CHUNK_COST_WINDOW ? n : CHUNK_COST_WINDOW;
    if (k <= 1)
        return k == 0 ? 0 : recent[0];
    uint64_t sum = 0, most = 0;
    for (uint64_t i = 0; i < k; i++) {
        sum += recent[i];
        if (recent[i] > most)
            most = recent[i];
    }
    return (sum - most) / (k - 1);
}

chunk_backing chunk_choose(const chunk_costs *c)
{
    if (c->chunks[BACKING_SMALL] == 0 || c->chunks[BACKING_HUGE] == 0)
        return BACKING_SMALL; /* not measured (the probe could not map) */
    return c->cost_ns[BACKING_HUGE] < c->cost_ns[BACKING_SMALL] ? BACKING_HUGE : BACKING_SMALL;
}

void chunk_costs_read(chunk_costs *out)
{
    for (int b = 0; b < 2; b++) {
        uint64_t recent[CHUNK_COST_WINDOW];
        for (int i = 0; i < CHUNK_COST_WINDOW; i++)
            recent[i] = atomic_load_explicit(&recent_ns[b][i], memory_order_relaxed);
        out->chunks[b] = atomic_load_explicit(&measured_chunks[b], memory_order_relaxed);
        out->cost_ns[b] = chunk_cost_of(recent, out->chunks[b]);
    }
}

static void record_cost(chunk_backing b, uint64_t ns)
{
    /* The window's entry before the count: a reader that sees the new
     * count with the old entry just takes one stale figure (relaxed). */
    uint64_t n = atomic_load_explicit(&measured_chunks[b], memory_order_relaxed);
    atomic_store_explicit(&recent_ns[b][n % CHUNK_COST_WINDOW], ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&measured_chunks[b], 1, memory_order_relaxed);
}

static uint64_t monotonic_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static unsigned char *map_plain(size_t bytes)
{
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

/* `bytes` (a multiple of CHUNK_HUGE_BYTES) at a huge-page boundary: map
 * one huge page more and give back the ends. */
static unsigned char *map_huge_aligned(size_t bytes)
{
    unsigned char *m = map_plain(bytes + CHUNK_HUGE_BYTES);
    if (m == NULL)
        return NULL;
    uintptr_t start = (uintptr_t)m, end = start + bytes + CHUNK_HUGE_BYTES;
    uintptr_t a = (start + CHUNK_HUGE_BYTES - 1) & ~(uintptr_t)(CHUNK_HUGE_BYTES - 1);
    if (a > start)
        munmap(m, a - start);
    if (end > a + bytes)
        munmap((void *)(a + bytes), end - (a + bytes));
    /* Best effort: with THP off it fails and the chunk is small pages,
     * which the measurement then simply sees. */
    (void)madvise((void *)a, bytes, MADV_HUGEPAGE);
    return (unsigned char *)a;
}

/* Maps, populates and touches `bytes` in backing b, timed. */
static unsigned char *map_measured(size_t bytes, chunk_backing b)
{
    uint64_t t0 = monotonic_ns();
    unsigned char *m = b == BACKING_HUGE ? map_huge_aligned(bytes) : map_plain(bytes);
    if (m == NULL)
        return NULL;
    (void)madvise(m, bytes, MADV_POPULATE_WRITE); /* best effort: the pass below faults in what it left */
    for (size_t off = 0; off < bytes; off += TOUCH_STRIDE)
        ((volatile unsigned char *)m)[off] = 0; /* zero already: writes nothing new */
    record_cost(b, monotonic_ns() - t0);
    return m;
}

/* Once per process, before its first populated chunk: both backings,
 * CHUNK_PROBES huge pages' worth each, interleaved, on mappings given
 * back at once. Probing on throwaway memory keeps a pool's chunks all in
 * one backing: probing on the pool's own first chunks left a few small
 * chunks among huge ones, and W7's delivery lateness after its set-up
 * was worse with that mix (p99 1.35 ms, 12 runs) than with either
 * backing alone (0.43-0.47 ms). */
static void probe_backings(void)
{
    for (int i = 0; i < CHUNK_PROBES; i++)
        for (int b = BACKING_SMALL; b <= BACKING_HUGE; b++)
            chunk_unmap(map_measured(CHUNK_HUGE_BYTES, (chunk_backing)b), CHUNK_HUGE_BYTES);
}

void *chunk_map(size_t bytes, bool populate)
{
    if (alloc_should_fail())
        return NULL;
    if (!populate)
        return map_plain(bytes); /* pages come on first touch, zeroed */
    if (bytes % CHUNK_HUGE_BYTES != 0) {
        unsigned char *m = map_plain(bytes);
        if (m != NULL)
            (void)madvise(m, bytes, MADV_POPULATE_WRITE);
        return m;
    }
    static pthread_once_t probed = PTHREAD_ONCE_INIT;
    pthread_once(&probed, probe_backings);
    chunk_costs c;
    chunk_costs_read(&c);
    chunk_backing choice = chunk_choose(&c);
    if (atomic_fetch_add_explicit(&populated, 1, memory_order_relaxed) % CHUNK_REPROBE_EVERY ==
        CHUNK_REPROBE_EVERY - 1) {
        chunk_backing other = choice == BACKING_HUGE ? BACKING_SMALL : BACKING_HUGE;
        chunk_unmap(map_measured(CHUNK_HUGE_BYTES, other), CHUNK_HUGE_BYTES);
        chunk_costs_read(&c);
        choice = chunk_choose(&c);
    }
    return map_measured(bytes, choice);
}

void chunk_unmap(void *chunk, size_t bytes)
{
    if (chunk != NULL)
        munmap(chunk, bytes);
}
