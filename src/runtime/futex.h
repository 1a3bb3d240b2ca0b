/* futex.h - the few OS primitives the runtime parks and times with. */
#ifndef GS_RUNTIME_FUTEX_H
#define GS_RUNTIME_FUTEX_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Sleeps while *word == expected, until woken or until the absolute
 * CLOCK_MONOTONIC deadline (NULL: no deadline). Returns 0 when woken (or
 * spuriously), -1 with errno ETIMEDOUT / EAGAIN / EINTR otherwise. */
int futex_wait_until(_Atomic uint32_t *word, uint32_t expected, const struct timespec *deadline);
void futex_wake(_Atomic uint32_t *word, int count);

#if defined(__SANITIZE_THREAD__)
#define GS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GS_TSAN 1
#endif
#endif

/* Seqlocks over records that may change or be reused under a reader
 * (deadline_clock.c, reply slots): the reader loads the state, the fields
 * with SEQ_FIELD_LOAD, SEQ_FENCE(acquire), the state again; the writer
 * SEQ_FENCE(release) after ending the record's last use, then stores the
 * fields with SEQ_FIELD_STORE. ThreadSanitizer does not model fences (gcc
 * refuses some under -fsanitize=thread): there the fields are read with
 * acquire and written with release instead, which orders the same pairs. */
#ifdef GS_TSAN
#define SEQ_FIELD_LOAD memory_order_acquire
#define SEQ_FIELD_STORE memory_order_release
#define SEQ_FENCE(order) ((void)0)
#else
#define SEQ_FIELD_LOAD memory_order_relaxed
#define SEQ_FIELD_STORE memory_order_relaxed
#define SEQ_FENCE(order) atomic_thread_fence(order)
#endif

/* A full (seq_cst) fence. ThreadSanitizer does not model fences (gcc
 * refuses them under -fsanitize=thread), so there a seq_cst RMW on a
 * private word stands in: a locked instruction is a full barrier on the
 * CPUs we build for, and the fences here order stores before loads (the
 * park/notify handshake), they do not create happens-before for data. */
static inline void full_fence(void)
{
#ifdef GS_TSAN
    static _Atomic int fence_word;
    atomic_fetch_add_explicit(&fence_word, 0, memory_order_seq_cst);
#else
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* Between a seq_cst store (or exchange) to one word and a seq_cst load of
 * another, in the sleep/wake handshakes (a `sleeping` flag against a
 * state word). C11 already orders the two; this makes it hold where the
 * implementation falls short. On x86-64 a seq_cst store is a locked
 * instruction or followed by mfence, so only the compiler is told.
 * Elsewhere it is a full fence: qemu-user 7.2 translates aarch64's
 * stlr/ldar pair without ordering the store before the load on an x86
 * host, and stress_call lost a wake-up under it (a caller slept on a
 * reply already DONE); on real aarch64 a dmb after stlr costs little. */
static inline void store_load_fence(void)
{
#if defined(__x86_64__)
    atomic_signal_fence(memory_order_seq_cst);
#else
    full_fence();
#endif
}

/* A pause instruction for spin loops. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline struct timespec ns_to_timespec(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
    return ts;
}

#endif
