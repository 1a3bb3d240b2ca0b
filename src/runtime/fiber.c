/* fiber.c - the stacks callbacks run on, and the switch between them.
 *
 * Problem: a callback that calls another server must wait for the reply
 * without holding its worker thread, keep its ordinary synchronous look,
 * and an idle server must cost no stack.
 *
 * Design: a worker runs each server turn (server_run) on a fiber: a stack
 * from this pool. Normally the turn ends, the fiber switches back to the
 * worker's own stack and stays the worker's spare, so a fiber is reused
 * turn after turn with no allocation. When a callback suspends in a call,
 * its fiber stays with the suspended server and the worker takes another
 * one for its next turn; when the reply resumes the server, whichever
 * worker picks it up switches to that fiber, and the callback continues
 * where it left off. Stacks are held only by servers with a call in
 * flight (plus one spare per worker).
 *
 * The switch is hand-written (x86-64 and aarch64): it saves the callee-
 * saved registers on the current stack, stores the stack pointer, loads
 * the other one and restores. The floating-point control words (MXCSR,
 * x87 CW; FPCR on aarch64) are not switched: a callback that changes them
 * must restore them before it calls (documented in genserver.h); saving
 * them cost a serialising fldcw/ldmxcsr on every turn. No
 * system call: ucontext's swapcontext saves the signal mask with one on
 * every switch (about 50 times slower; see DESIGN.md). Other targets use
 * ucontext.
 *
 * Stacks are FIBER_STACK_SIZE of address space with MAP_NORESERVE: only
 * the pages a callback touches take memory. Each has a PROT_NONE guard
 * page below it, up to FIBER_GUARDED_MAX stacks (each guard costs two
 * kernel memory maps, of which Linux allows 65530 per process); stacks
 * beyond that carry a canary word at their low end, checked at every
 * switch back, which turns an overflow into an abort with a message.
 *
 * Sanitizers are told about every switch: AddressSanitizer through
 * __sanitizer_{start,finish}_switch_fiber, ThreadSanitizer through
 * __tsan_{create,switch_to,destroy}_fiber.
 */
#define _GNU_SOURCE
#include "fiber.h"
#include "alloc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "futex.h" /* GS_TSAN */

#if defined(__SANITIZE_ADDRESS__)
#define GS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GS_ASAN 1
#endif
#endif

#ifdef GS_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef GS_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define SLAB_STACKS 16u
#define CANARY UINT64_C(0x9E3779B97F4A7C15)

/* ---- the switch ----------------------------------------------------- */

#if defined(__x86_64__)
/* void gs_ctx_switch(void **save_sp, void *load_sp) */
__asm__(".text\n"
        ".globl gs_ctx_switch\n"
        ".hidden gs_ctx_switch\n"
        ".type gs_ctx_switch,@function\n"
        "gs_ctx_switch:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size gs_ctx_switch, .-gs_ctx_switch\n"
        /* First entry of a fiber: r12 = function, r13 = its argument. */
        ".globl gs_ctx_trampoline\n"
        ".hidden gs_ctx_trampoline\n"
        ".type gs_ctx_trampoline,@function\n"
        "gs_ctx_trampoline:\n"
        "  movq %r13, %rdi\n"
        "  callq *%r12\n"
        "  ud2\n"
        ".size gs_ctx_trampoline, .-gs_ctx_trampoline\n");
#define GS_HAVE_ASM_SWITCH 1
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl gs_ctx_switch\n"
        ".hidden gs_ctx_switch\n"
        ".type gs_ctx_switch,%function\n"
        "gs_ctx_switch:\n"
        "  sub sp, sp, #160\n"
        "  stp x19, x20, [sp, #0]\n"
        "  stp x21, x22, [sp, #16]\n"
        "  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n"
        "  stp x27, x28, [sp, #64]\n"
        "  stp x29, x30, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n"
        "  stp d10, d11, [sp, #112]\n"
        "  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n"
        "  mov x2, sp\n"
        "  str x2, [x0]\n"
        "  mov sp, x1\n"
        "  ldp x19, x20, [sp, #0]\n"
        "  ldp x21, x22, [sp, #16]\n"
        "  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n"
        "  ldp x27, x28, [sp, #64]\n"
        "  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n"
        "  ldp d10, d11, [sp, #112]\n"
        "  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  add sp, sp, #160\n"
        "  ret\n"
        ".size gs_ctx_switch, .-gs_ctx_switch\n"
        ".globl gs_ctx_trampoline\n"
        ".hidden gs_ctx_trampoline\n"
        ".type gs_ctx_trampoline,%function\n"
        "gs_ctx_trampoline:\n"
        "  mov x0, x20\n"
        "  blr x19\n"
        "  brk #0\n"
        ".size gs_ctx_trampoline, .-gs_ctx_trampoline\n");
#define GS_HAVE_ASM_SWITCH 1
#endif

#ifdef GS_HAVE_ASM_SWITCH
void gs_ctx_switch(void **save_sp, void *load_sp);
void gs_ctx_trampoline(void);

/* Lays out a first frame that gs_ctx_switch "returns" from into the
 * trampoline, which calls fiber_body(f). */
static void *initial_frame(fiber *f)
{
    uintptr_t top = ((uintptr_t)f->stack_lo + f->stack_size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* Six pops and the ret leave rsp = top (16-byte aligned), so the
     * trampoline's call enters fiber_body with rsp = 8 mod 16, as the ABI
     * wants at a function's entry. */
    uint64_t *sp = (uint64_t *)(top - 56);
    sp[0] = 0;                               /* r15 */
    sp[1] = 0;                               /* r14 */
    sp[2] = (uint64_t)(uintptr_t)f;          /* r13: argument */
    sp[3] = (uint64_t)(uintptr_t)fiber_body; /* r12: function */
    sp[4] = 0;                               /* rbx */
    sp[5] = 0;                               /* rbp */
    sp[6] = (uint64_t)(uintptr_t)gs_ctx_trampoline; /* return address */
    return sp;
#else
    uint64_t *sp = (uint64_t *)(top - 160);
    memset(sp, 0, 160);
    sp[0] = (uint64_t)(uintptr_t)fiber_body; /* x19 */
    sp[1] = (uint64_t)(uintptr_t)f;          /* x20 */
    sp[11] = (uint64_t)(uintptr_t)gs_ctx_trampoline; /* x30 */
    return sp;
#endif
}
#else
#error "genserver needs a context switch for this target (x86-64 and aarch64 are provided)"
#endif

/* ---- the pool -------------------------------------------------------- */

struct fiber_pool {
    pthread_mutex_t lock;
    fiber *free;
    size_t in_use, guarded;
    void **slabs;
    size_t nslabs, cap_slabs;
};

int fiber_pool_create(fiber_pool **out)
{
    fiber_pool *p = gs_calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    pthread_mutex_init(&p->lock, NULL);
    *out = p;
    return 0;
}

static size_t page_size(void)
{
    /* relaxed: every thread that finds it unset stores the same value;
     * atomic because pools of several runtimes ask at once. */
    static _Atomic size_t cached;
    size_t page = atomic_load_explicit(&cached, memory_order_relaxed);
    if (page == 0) {
        page = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&cached, page, memory_order_relaxed);
    }
    return page;
}

/* Maps SLAB_STACKS stacks in one mapping; the caller holds the lock. */
static bool add_slab(fiber_pool *p)
{
    size_t page = page_size();
    size_t each = FIBER_STACK_SIZE + page; /* guard (or canary) page below each */
    size_t bytes = each * SLAB_STACKS;
    if (p->nslabs == p->cap_slabs) {
        size_t cap = p->cap_slabs ? p->cap_slabs * 2 : 16;
        void **grown = gs_realloc(p->slabs, cap * 2 * sizeof(void *));
        if (grown == NULL)
            return false;
        p->slabs = grown;
        p->cap_slabs = cap;
    }
    fiber *fibers = gs_calloc(SLAB_STACKS, sizeof(fiber));
    unsigned char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (fibers == NULL || mem == MAP_FAILED) {
        free(fibers);
        if (mem != MAP_FAILED)
            munmap(mem, bytes);
        return false;
    }
    p->slabs[2 * p->nslabs] = mem;
    p->slabs[2 * p->nslabs + 1] = fibers;
    p->nslabs++;
    for (unsigned i = 0; i < SLAB_STACKS; i++) {
        fiber *f = &fibers[i];
        unsigned char *base = mem + i * each;
        f->guarded = p->guarded < FIBER_GUARDED_MAX && mprotect(base, page, PROT_NONE) == 0;
        if (f->guarded)
            p->guarded++;
        f->stack_lo = base + page;
        f->stack_size = FIBER_STACK_SIZE;
        if (!f->guarded) {
            uint64_t canary = CANARY;
            memcpy(f->stack_lo, &canary, sizeof canary);
        }
#ifdef GS_TSAN
        f->tsan_fiber = __tsan_create_fiber(0);
#endif
        f->next_free = p->free;
        p->free = f;
    }
    return true;
}

fiber *fiber_get(fiber_pool *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->free == NULL && !add_slab(p)) {
        pthread_mutex_unlock(&p->lock);
        return NULL;
    }
    fiber *f = p->free;
    p->free = f->next_free;
    p->in_use++;
    pthread_mutex_unlock(&p->lock);
    /* A fresh start: its body begins at the top of the stack. */
    f->sp = initial_frame(f);
    f->proc = NULL;
    f->status = FIBER_IDLE;
    return f;
}

void fiber_put(fiber_pool *p, fiber *f)
{
    pthread_mutex_lock(&p->lock);
    f->next_free = p->free;
    p->free = f;
    p->in_use--;
    pthread_mutex_unlock(&p->lock);
}

size_t fiber_pool_in_use(fiber_pool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->in_use;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void fiber_pool_destroy(fiber_pool *p)
{
    if (p == NULL)
        return;
    size_t bytes = (FIBER_STACK_SIZE + page_size()) * SLAB_STACKS;
    for (size_t i = 0; i < p->nslabs; i++) {
        fiber *fibers = p->slabs[2 * i + 1];
#ifdef GS_TSAN
        for (unsigned k = 0; k < SLAB_STACKS; k++)
            __tsan_destroy_fiber(fibers[k].tsan_fiber);
#endif
#ifdef GS_ASAN
        /* Parked fibers leave their frames' poisoning in ASan's shadow of
         * the stacks; memory mapped there later would inherit it, and an
         * access to it would be reported as a stack overflow. */
        ASAN_UNPOISON_MEMORY_REGION(p->slabs[2 * i], bytes);
#endif
        munmap(p->slabs[2 * i], bytes);
        free(fibers);
    }
    free(p->slabs);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ---- entering and leaving ---------------------------------------------- */

void fiber_home_init(fiber_home *home)
{
    home->sp = NULL;
#ifdef GS_TSAN
    home->tsan_fiber = __tsan_get_current_fiber();
#else
    home->tsan_fiber = NULL;
#endif
    home->asan_bottom = NULL;
    home->asan_size = 0;
}

static void check_canary(const fiber *f)
{
    if (f->guarded)
        return;
    uint64_t canary;
    memcpy(&canary, f->stack_lo, sizeof canary);
    if (canary != CANARY) {
        fprintf(stderr, "genserver: a callback overflowed its %zu-byte fiber stack\n", f->stack_size);
        abort();
    }
}

/* Where the fiber returns to (set by each fiber_enter: a suspended fiber
 * may be resumed by another worker). */
static _Thread_local fiber_home *tl_entering_home __attribute__((tls_model("initial-exec")));

void fiber_enter(fiber_home *home, fiber *f)
{
    tl_entering_home = home;
#ifdef GS_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, f->stack_lo, f->stack_size);
#endif
#ifdef GS_TSAN
    __tsan_switch_to_fiber(f->tsan_fiber, 0);
#endif
    gs_ctx_switch(&home->sp, f->sp);
#ifdef GS_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    check_canary(f);
}

/* Called on the fiber right after it was switched to. */
static void arrived(fiber_home *home)
{
#ifdef GS_ASAN
    /* Learn the worker's own stack, to switch back to it later. */
    __sanitizer_finish_switch_fiber(NULL, &home->asan_bottom, &home->asan_size);
#else
    (void)home;
#endif
}

void fiber_leave(fiber_home *home, fiber *f)
{
#ifdef GS_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, home->asan_bottom, home->asan_size);
#endif
#ifdef GS_TSAN
    __tsan_switch_to_fiber(home->tsan_fiber, 0);
#endif
    gs_ctx_switch(&f->sp, home->sp);
    /* Resumed, maybe by another worker: tl_entering_home is its home. */
#ifdef GS_ASAN
    __sanitizer_finish_switch_fiber(fake, &tl_entering_home->asan_bottom, &tl_entering_home->asan_size);
#endif
}

__attribute__((noinline)) fiber_home *fiber_current_home(void)
{
    return tl_entering_home;
}

void fiber_first_arrival(void)
{
    arrived(tl_entering_home);
}
