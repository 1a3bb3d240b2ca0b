/* w4_ring_multi.c - W4: many tokens in one ring (parallel ThreadRing).
 *
 * The ring of W3 (w3_ring.c) with t tokens injected at evenly spaced
 * servers, each with k hops; finished when all t reach 0. Unlike W3,
 * several servers are runnable at once, so every worker can be busy.
 */
#include "bench.h"

void w4_ring_multi(bench *b)
{
    bench_ring(b, bench_param(b, "r"), bench_param(b, "t"), bench_param(b, "k"));
}
