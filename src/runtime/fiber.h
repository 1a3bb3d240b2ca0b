/* fiber.h - stacks that a server's callbacks run on, so that a callback
 * can be suspended (in gs_call) without holding its worker thread.
 *
 * Who may call what: fiber_get / fiber_put / fiber_switch from workers;
 * the pool is shared by the runtime's workers (a mutex: stacks move only
 * when a call suspends or a suspended call ends).
 */
#ifndef GS_RUNTIME_FIBER_H
#define GS_RUNTIME_FIBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct proc;
struct gs_runtime;

typedef enum { FIBER_IDLE, FIBER_AGAIN, FIBER_SUSPENDED } fiber_status;

typedef struct fiber {
    void *sp;                 /* saved stack pointer while not running */
    unsigned char *stack_lo;  /* lowest usable byte (a guard page or canary below) */
    size_t stack_size;
    struct proc *proc;        /* the server being run on it */
    fiber_status status;      /* why it last switched back to its worker */
    bool guarded;             /* has a PROT_NONE guard page (else a canary) */
    struct fiber *next_free;
    void *tsan_fiber;
} fiber;

/* The execution context a worker thread switches from and back to. */
typedef struct fiber_home {
    void *sp;
    void *tsan_fiber;
    const void *asan_bottom; /* the thread's own stack, for ASan */
    size_t asan_size;
} fiber_home;

/* Stack size of a fiber (virtual; only touched pages cost memory). */
#define FIBER_STACK_SIZE ((size_t)64 << 10)
/* Stacks with a guard page; beyond this many, a canary is checked at
 * every switch instead (each guard page costs two kernel memory maps, and
 * Linux allows 65530 per process by default). */
#define FIBER_GUARDED_MAX 16384u

typedef struct fiber_pool fiber_pool;

int fiber_pool_create(fiber_pool **out);
void fiber_pool_destroy(fiber_pool *pool);
/* A fiber ready to run server_run for f->proc, or NULL (out of memory). */
fiber *fiber_get(fiber_pool *pool);
void fiber_put(fiber_pool *pool, fiber *f);
size_t fiber_pool_in_use(fiber_pool *pool);

/* From the worker's own context: runs f until it switches back. */
void fiber_enter(fiber_home *home, fiber *f);
/* From inside f: back to `home`, the worker that entered it. Returns when
 * some worker enters f again. */
void fiber_leave(fiber_home *home, fiber *f);

void fiber_home_init(fiber_home *home);

/* The body every fiber runs: loops forever running f->proc and leaving
 * (defined by the scheduler). */
void fiber_body(fiber *f);

/* On a fiber: the home of the worker that entered it last (a suspended
 * fiber may be resumed by another worker). Not inlined: thread-local
 * addresses must be computed afresh after a switch. */
fiber_home *fiber_current_home(void) __attribute__((noinline));
/* The first thing fiber_body does. */
void fiber_first_arrival(void);

#endif
