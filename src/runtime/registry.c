/* registry.c - names for servers: gs_register, gs_unregister, gs_whereis.
 *
 * Lookups are lock-free: liburcu's RCU hash table (cds_lfht, urcu-memb
 * flavour) read under rcu_read_lock, with entries reclaimed by call_rcu
 * after removal, so a reader never sees freed memory. Updates (rare:
 * register, unregister, a named server's exit) take one mutex per runtime,
 * which also guards each server's list of its own names (proc->names).
 * A registration holds a reference on the server's slot while it inserts,
 * so it either completes before the server closes (and the exit path
 * finds the name and releases it, before the server's monitors fire) or
 * fails with GS_ENOPROC.
 * Threads reading the table must be registered with urcu-memb: every
 * thread that calls in is registered on first use and unregistered when
 * it exits (a pthread key destructor).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include "internal.h"
#include "alloc.h"

typedef struct reg_entry {
    struct cds_lfht_node node;
    struct rcu_head rcu;
    _Atomic gs_pid pid; /* see gs_register */
    struct reg_entry *next_of_pid; /* the server's own list, under reg_lock */
    char name[];
} reg_entry;

/* ---- thread registration with urcu-memb ---------------------------- */

static pthread_key_t rcu_key;
static pthread_once_t rcu_key_once = PTHREAD_ONCE_INIT;
static _Thread_local bool rcu_registered;

static void rcu_thread_exit(void *unused)
{
    (void)unused;
    if (rcu_registered) {
        urcu_memb_unregister_thread();
        rcu_registered = false;
    }
}

static void rcu_key_create(void)
{
    (void)pthread_key_create(&rcu_key, rcu_thread_exit);
}

static void rcu_thread_enter(void)
{
    if (rcu_registered)
        return;
    pthread_once(&rcu_key_once, rcu_key_create);
    urcu_memb_register_thread();
    rcu_registered = true;
    (void)pthread_setspecific(rcu_key, (void *)1); /* non-NULL: the destructor runs */
}

void registry_thread_exit(void)
{
    rcu_thread_exit(NULL);
}

/* ---- the table ------------------------------------------------------- */

static unsigned long name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return (unsigned long)(h ^ (h >> 29));
}

static int name_match(struct cds_lfht_node *node, const void *key)
{
    const reg_entry *e = caa_container_of(node, reg_entry, node);
    return strcmp(e->name, key) == 0;
}

int registry_init(gs_runtime *rt)
{
    /* The table itself (and liburcu's resize thread) comes with the first
     * registration: most runtimes never name a server. */
    atomic_init(&rt->names, NULL);
    pthread_mutex_init(&rt->reg_lock, NULL);
    return GS_OK;
}

/* The table, created on first use (under reg_lock). */
static struct cds_lfht *table_get_locked(gs_runtime *rt)
{
    struct cds_lfht *ht = atomic_load_explicit(&rt->names, memory_order_relaxed);
    if (ht == NULL) {
        ht = cds_lfht_new_flavor(64, 64, 0, CDS_LFHT_AUTO_RESIZE, &urcu_memb_flavor, NULL);
        /* release: readers that acquire the pointer see the table built. */
        atomic_store_explicit(&rt->names, ht, memory_order_release);
    }
    return ht;
}

static struct cds_lfht *table_get(gs_runtime *rt)
{
    return atomic_load_explicit(&rt->names, memory_order_acquire);
}

void registry_destroy(gs_runtime *rt)
{
    struct cds_lfht *ht = table_get(rt);
    if (ht != NULL) {
        rcu_thread_enter();
        /* Every server is gone, so every name was released; wait for the
         * call_rcu frees before the table goes. */
        urcu_memb_barrier();
        (void)cds_lfht_destroy(ht, NULL);
        atomic_store_explicit(&rt->names, NULL, memory_order_relaxed);
    }
    pthread_mutex_destroy(&rt->reg_lock);
}

static void entry_free_rcu(struct rcu_head *head)
{
    free(caa_container_of(head, reg_entry, rcu));
}

bool registry_name_valid(const char *name)
{
    return name != NULL && name[0] != '\0' && strnlen(name, GS_NAME_MAX + 1) <= GS_NAME_MAX;
}

static int check_name(const char *name)
{
    return registry_name_valid(name) ? GS_OK : GS_EINVAL;
}

int gs_register(gs_runtime *rt, const char *name, gs_pid pid)
{
    if (rt == NULL || check_name(name) != GS_OK)
        return GS_EINVAL;
    size_t len = strlen(name);
    reg_entry *e = gs_malloc(sizeof *e + len + 1);
    if (e == NULL)
        return GS_ENOMEM;
    memcpy(e->name, name, len + 1);
    /* release, paired with gs_whereis's acquire: liburcu publishes the
     * node with its own barriers, which ThreadSanitizer cannot see (the
     * library is not instrumented); this pair shows it that a reader of
     * the pid sees the entry made. Plain moves on x86. */
    atomic_store_explicit(&e->pid, pid, memory_order_release);
    cds_lfht_node_init(&e->node);
    rcu_thread_enter();
    pthread_mutex_lock(&rt->reg_lock);
    proc *p;
    struct cds_lfht *ht = table_get_locked(rt);
    int rc = ht == NULL ? GS_ENOMEM : proc_acquire(rt, pid, CTL_OPEN, &p);
    if (rc == GS_OK) {
        urcu_memb_read_lock();
        struct cds_lfht_node *got = cds_lfht_add_unique(ht, name_hash(name), name_match, e->name, &e->node);
        urcu_memb_read_unlock();
        if (got != &e->node) {
            rc = GS_EEXIST;
        } else {
            e->next_of_pid = p->names;
            p->names = e;
        }
        proc_release(p);
    }
    pthread_mutex_unlock(&rt->reg_lock);
    if (rc != GS_OK)
        free(e);
    return rc;
}

/* Unlinks e from its server's list of names (under reg_lock). */
static void unlink_from_pid(gs_runtime *rt, reg_entry *e)
{
    proc *p = proc_table_at(rt, pid_index(atomic_load_explicit(&e->pid, memory_order_relaxed)));
    for (reg_entry **at = &p->names; *at != NULL; at = &(*at)->next_of_pid) {
        if (*at == e) {
            *at = e->next_of_pid;
            return;
        }
    }
}

int gs_unregister(gs_runtime *rt, const char *name)
{
    if (rt == NULL || check_name(name) != GS_OK)
        return GS_EINVAL;
    rcu_thread_enter();
    int rc = GS_ENOENT;
    pthread_mutex_lock(&rt->reg_lock);
    struct cds_lfht *ht = table_get(rt);
    if (ht == NULL) {
        pthread_mutex_unlock(&rt->reg_lock);
        return GS_ENOENT;
    }
    urcu_memb_read_lock();
    struct cds_lfht_iter it;
    cds_lfht_lookup(ht, name_hash(name), name_match, name, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    if (node != NULL && cds_lfht_del(ht, node) == 0) {
        reg_entry *e = caa_container_of(node, reg_entry, node);
        unlink_from_pid(rt, e);
        urcu_memb_call_rcu(&e->rcu, entry_free_rcu);
        rc = GS_OK;
    }
    urcu_memb_read_unlock();
    pthread_mutex_unlock(&rt->reg_lock);
    return rc;
}

int gs_whereis(gs_runtime *rt, const char *name, gs_pid *out)
{
    if (rt == NULL || out == NULL || check_name(name) != GS_OK)
        return GS_EINVAL;
    struct cds_lfht *ht = table_get(rt);
    if (ht == NULL)
        return GS_ENOENT;
    rcu_thread_enter();
    int rc = GS_ENOENT;
    urcu_memb_read_lock();
    struct cds_lfht_iter it;
    cds_lfht_lookup(ht, name_hash(name), name_match, name, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    if (node != NULL) {
        *out = atomic_load_explicit(&caa_container_of(node, reg_entry, node)->pid, memory_order_acquire);
        rc = GS_OK;
    }
    urcu_memb_read_unlock();
    return rc;
}

/* A server's exit (after its slot closed: no registration can race). */
void registry_release(gs_runtime *rt, proc *p)
{
    if (p->names == NULL)
        return;
    rcu_thread_enter();
    pthread_mutex_lock(&rt->reg_lock);
    reg_entry *e = p->names;
    p->names = NULL;
    urcu_memb_read_lock();
    while (e != NULL) {
        reg_entry *next = e->next_of_pid;
        if (cds_lfht_del(table_get(rt), &e->node) == 0)
            urcu_memb_call_rcu(&e->rcu, entry_free_rcu);
        e = next;
    }
    urcu_memb_read_unlock();
    pthread_mutex_unlock(&rt->reg_lock);
}

int gs_cast_name(gs_runtime *rt, const char *name, uint32_t tag, const void *data, size_t len)
{
    gs_pid pid;
    int rc = gs_whereis(rt, name, &pid);
    if (rc != GS_OK)
        return rc == GS_ENOENT ? GS_ENOPROC : rc;
    return gs_cast(rt, pid, tag, data, len);
}

int gs_call_name(gs_runtime *rt, const char *name, uint32_t tag, const void *data, size_t len, void *reply,
                 size_t reply_cap, size_t *reply_len, int timeout_ms)
{
    gs_pid pid;
    int rc = gs_whereis(rt, name, &pid);
    if (rc != GS_OK)
        return rc == GS_ENOENT ? GS_ENOPROC : rc;
    return gs_call(rt, pid, tag, data, len, reply, reply_cap, reply_len, timeout_ms);
}
