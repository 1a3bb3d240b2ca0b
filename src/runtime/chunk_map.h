/* chunk_map.h - memory for the big chunks of record pools, in whichever
 * page size is cheaper to bring in on this machine, chosen by measuring.
 *
 * Why measure: what a fresh page costs depends on the host, and the two
 * VMs these benchmarks ran on disagree. On one, a transparent huge page
 * was usually a 2 MiB block the balloon driver had reported to the host,
 * which then faulted it back in 4 KiB at a time (64 MiB: 66-183 ms in
 * huge pages, 25-43 ms in small ones). On another (PVM, shadow page
 * tables) every 4 KiB mapping costs a few microseconds on first touch
 * even after MADV_POPULATE_WRITE, and huge pages are the cheap ones
 * (64 MiB: 82-270 ms small, 5-180 ms huge). A fixed choice is wrong on
 * one of them, so before its first populated chunk a process tries both
 * on throwaway memory and uses the cheaper; every chunk it populates is
 * measured too, so if the chosen backing turns dearer than the other's
 * probe, later chunks switch, and the other is probed again now and
 * then (CHUNK_REPROBE_EVERY).
 *
 * Only chunks the pool asks to populate (chunks after a pool's first:
 * the pool is being filled fast) and whose size is a multiple of 2 MiB
 * are candidates for huge pages; everything else is mapped as before.
 */
#ifndef GS_RUNTIME_CHUNK_MAP_H
#define GS_RUNTIME_CHUNK_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHUNK_HUGE_BYTES ((size_t)2 << 20) /* a PMD-sized transparent huge page */

typedef enum { BACKING_SMALL = 0, BACKING_HUGE = 1 } chunk_backing;

/* What the process has measured so far: per backing, chunks brought in
 * and its cost: the mean nanoseconds of its last CHUNK_COST_WINDOW chunks
 * leaving out the dearest one (0 when none was measured).
 *
 * Why not a plain moving average: it was seeded by the probe's first
 * chunk, and the first huge page a process asks for can wait 9 ms for
 * compaction here against 0.15 ms for the rest; seeded so, it chose
 * small pages at 6x the cost for a whole process (the backing not chosen
 * is never measured again by use). Why not the least of the window
 * (tried next): huge pages right after another process freed a lot of
 * memory cost 0.3 ms when a free one is at hand and 6-9 ms when it must
 * be compacted, and the least saw only the cheap ones: W7 after W6 then
 * spent 178-232 ns per timer bringing pages in, against 29-58 with small
 * pages. The trimmed mean ignores one outlier and follows a backing whose
 * dear chunks come often. */
#define CHUNK_COST_WINDOW 4

typedef struct chunk_costs {
    uint64_t chunks[2];
    uint64_t cost_ns[2];
} chunk_costs;

#define CHUNK_PROBES 2 /* huge pages' worth of each backing measured before choosing */

/* Every CHUNK_REPROBE_EVERY populated chunks, the backing not in use is
 * measured again on throwaway memory, so that a probe that was unlucky
 * every time, or a host that changed, does not fix the choice for the
 * life of the process. 64 MiB of records per probe of 2 MiB. */
#define CHUNK_REPROBE_EVERY 32

/* The policy, pure functions so tests can drive them. The cost of a
 * backing from its last measurements (`recent` is a ring of
 * CHUNK_COST_WINDOW written at n % CHUNK_COST_WINDOW, n measured in
 * all), and the choice: the cheaper, small pages when tied or
 * unmeasured. */
uint64_t chunk_cost_of(const uint64_t recent[CHUNK_COST_WINDOW], uint64_t n);
chunk_backing chunk_choose(const chunk_costs *c);

/* Zeroed memory for a chunk of `bytes`; NULL when out of memory (or
 * when fault injection says so). With `populate`, its pages are brought
 * in now rather than on first touch, and timed. */
void *chunk_map(size_t bytes, bool populate);
void chunk_unmap(void *chunk, size_t bytes);

/* A snapshot of the process's measurements (tests, diagnostics). */
void chunk_costs_read(chunk_costs *out);

#endif
