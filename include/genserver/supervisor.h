/* genserver/supervisor.h - OTP supervisors: children restarted by strategy
 * within a restart intensity. Included by genserver.h. */
#ifndef GENSERVER_SUPERVISOR_H
#define GENSERVER_SUPERVISOR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { GS_ONE_FOR_ONE, GS_ONE_FOR_ALL, GS_REST_FOR_ONE } gs_strategy;
typedef enum { GS_PERMANENT, GS_TRANSIENT, GS_TEMPORARY } gs_restart;

typedef struct gs_child_spec {
    const char *id;            /* unique among the supervisor's children; copied */
    const gs_server_ops *ops;  /* must stay valid while the supervisor lives */
    const void *arg;           /* passed to init at every (re)start; must stay valid */
    gs_restart restart;        /* permanent: always; transient: after an abnormal exit; temporary: never */
    int shutdown_ms;           /* 0: brutal kill, GS_INFINITY: wait for terminate */
    const char *name;          /* optional registered name (NULL: none); copied */
} gs_child_spec;

typedef struct gs_sup_spec {
    gs_strategy strategy;
    int intensity;  /* restarts allowed ... */
    int period_ms;  /* ... within this many milliseconds */
    const gs_child_spec *children;
    size_t nchildren;
    size_t max_children; /* 0: no limit; a full supervisor refuses with GS_EAGAIN */
} gs_sup_spec;

/* A supervisor is a server with these ops and a `const gs_sup_spec *` as
 * init argument, so that it can be a child of another supervisor (give
 * such a child shutdown_ms GS_INFINITY, as OTP does, so that its own
 * children are stopped properly).
 *
 * Behaviour (OTP's supervisor is the model):
 *  - init copies the spec (ids and names; ops and arg are kept as
 *    pointers), traps exits, and starts the children in order: gs_start
 *    (their init runs before it returns), linked before the child can take
 *    a message (as OTP's start_link: a child that exits right after its
 *    init is an exit, handled by its restart type, not a start failure),
 *    then gs_register of the child's name if it has one. If a child fails
 *    to start (its init refuses or fails), the children
 *    already started are stopped in reverse order and the supervisor fails
 *    to start with that child's error. A bad spec gives GS_EINVAL (NULL
 *    spec, NULL children with nchildren > 0, an unknown strategy,
 *    intensity < 0, period_ms <= 0, a child without id or ops, a bad
 *    restart type or shutdown_ms, an empty or too long name, more
 *    children than max_children); duplicate ids give GS_EEXIST. No
 *    children at all (NULL, 0) is a supervisor whose children all come
 *    at run time.
 *  - A child exit (reason R): permanent children are always restarted,
 *    transient ones only if R is neither GS_NORMAL nor GS_SHUTDOWN,
 *    temporary ones never. A child that is not restarted is forgotten (its
 *    id may be used again). one_for_one restarts the child; one_for_all
 *    stops the other children in reverse order and restarts them all in
 *    order; rest_for_one does the same with the children started after
 *    it. Temporary children stopped for a restart are not restarted. A
 *    child whose init fails during a restart counts as one more restart.
 *  - More than `intensity` restarts within `period_ms` (intensity 2 allows
 *    two; the third in the period ends it): the supervisor stops every
 *    child in reverse order and exits with GS_SHUTDOWN.
 *  - Stopping a child: unlink it, then shutdown_ms 0: gs_kill (terminate
 *    does not run); otherwise gs_stop with GS_SHUTDOWN waiting shutdown_ms
 *    (GS_INFINITY: as long as it takes), and if it has not terminated by
 *    then it is forced: gs_kill, its terminate is skipped (unless it had
 *    already begun) and the log says so. A running callback cannot be
 *    interrupted in C: "forced" means the server is removed as soon as its
 *    current callback returns. Either way the supervisor waits until the
 *    child is gone (its names released) before it goes on.
 *  - Stopping the supervisor (gs_stop, gs_runtime_stop, its own
 *    supervisor) stops its children in reverse start order in its
 *    terminate. An exit signal from a linked server that is not one of its
 *    children (its parent) with a reason other than GS_NORMAL makes it exit
 *    with that reason. Killed with gs_kill, it cannot stop its children:
 *    they get the GS_KILLED exit signal through their links (and the
 *    supervisor's bookkeeping memory is not freed).
 *  - Log reports: child started (info), child terminated with its reason
 *    (error if abnormal, info otherwise), forced stops (warning), restarts
 *    (info), start failures and intensity reached (error).
 *
 * Workers: a supervisor waits for a child to stop on its own worker (as
 * any callback calling gs_stop does), while the child needs another worker
 * to run its terminate. With a single worker a child stop can therefore
 * only end by its timeout (and shutdown_ms GS_INFINITY never ends), and a
 * tree of nested supervisors needs more workers than it has levels of
 * supervisors being stopped at once. Use at least 2 workers, plus one per
 * nested supervisor level.
 *
 * A child's init runs inside the supervisor's callback, which waits for
 * it: gs_supervisor_* (and any gs_call or gs_stop) on its own supervisor
 * returns GS_EDEADLK there (in OTP such a call hangs).
 *
 * A child may call its own supervisor from its other callbacks, its
 * terminate included, even while the supervisor is stopping it: the
 * child's call waits behind the supervisor's running callback until the
 * stop's shutdown_ms runs out, and the forcing gs_kill then ends the call
 * with GS_EKILLED (and any further one), so the child's callback returns
 * and the stop completes. With shutdown_ms GS_INFINITY it is never forced:
 * such a child and its supervisor wait for each other for ever. */
extern const gs_server_ops gs_supervisor_ops;

/* gs_start(rt, &gs_supervisor_ops, spec, out): returns once every child's
 * init has run. GS_EINVAL also for rt or spec NULL. */
int gs_supervisor_start(gs_runtime *rt, const gs_sup_spec *spec, gs_pid *out);

/* Adds and starts a child at run time (any strategy; it goes last in the
 * start order). *out (may be NULL) gets its pid. Returns GS_OK, GS_EEXIST
 * (duplicate id), GS_EAGAIN (max_children reached), the child's start
 * error (its init's code, GS_ECANCELED, ...; the child is then not kept),
 * GS_EINVAL (rt or child NULL, a bad spec as for init), GS_ENOPROC (sup
 * is not a live server), GS_ENOTSUP (sup is not a supervisor), GS_ENOMEM.
 * Waits as long as the supervisor takes; from the supervisor's own
 * callbacks it returns GS_EDEADLK. */
int gs_supervisor_start_child(gs_runtime *rt, gs_pid sup, const gs_child_spec *child, gs_pid *out);

/* Stops a child (as described above) and forgets it: it is not restarted.
 * GS_OK, GS_ENOENT (unknown id), GS_EINVAL, GS_ENOPROC, GS_ENOTSUP. */
int gs_supervisor_terminate_child(gs_runtime *rt, gs_pid sup, const char *id);

/* *out = the child's current pid. GS_OK, GS_ENOENT (unknown id),
 * GS_ENOPROC (the child is known but not running: only while the runtime
 * shuts down), GS_EINVAL (rt, id or out NULL), GS_ENOTSUP. */
int gs_supervisor_which_child(gs_runtime *rt, gs_pid sup, const char *id, gs_pid *out);

#ifdef __cplusplus
}
#endif
#endif
