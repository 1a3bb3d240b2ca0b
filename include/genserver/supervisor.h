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
 * init argument, so that it can be a child of another supervisor. */
extern const gs_server_ops gs_supervisor_ops;

int gs_supervisor_start(gs_runtime *rt, const gs_sup_spec *spec, gs_pid *out);
int gs_supervisor_start_child(gs_runtime *rt, gs_pid sup, const gs_child_spec *child, gs_pid *out);
int gs_supervisor_terminate_child(gs_runtime *rt, gs_pid sup, const char *id);
int gs_supervisor_which_child(gs_runtime *rt, gs_pid sup, const char *id, gs_pid *out);

#ifdef __cplusplus
}
#endif
#endif
