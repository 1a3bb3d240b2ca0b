/* genserver/status.h - status codes, exit reasons and timeouts.
 *
 * Every fallible function of genserver returns GS_OK (0) or one of the
 * negative GS_E* codes below; gs_strerror() turns any of them into a
 * sentence. Callbacks return GS_OK, GS_STOP, GS_NOREPLY (handle_call only)
 * or a negative code, which crashes their server with that code as reason.
 */
#ifndef GENSERVER_STATUS_H
#define GENSERVER_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---- What a callback returns --------------------------------------- */
#define GS_OK 0      /* success / carry on */
#define GS_STOP 1    /* stop this server with reason GS_NORMAL */
#define GS_NOREPLY 2 /* handle_call only: the reply comes later, through gs_reply */

/* ---- Exit reasons (passed to terminate and gs_stop) ----------------- *
 * GS_NORMAL and GS_SHUTDOWN are clean exits. A negative reason (a GS_E*
 * code returned by a callback) is a crash and produces a crash report.
 * Any other positive value is a user-defined reason and is also treated
 * as abnormal (no crash report is written for a gs_stop with it). */
#define GS_NORMAL 0
#define GS_SHUTDOWN 1
#define GS_KILLED 3 /* removed by gs_kill: terminate did not run */

/* ---- Timeouts ------------------------------------------------------- *
 * Every timeout argument is in milliseconds: 0 means "do not wait beyond
 * what is already there", a positive value waits that long, GS_INFINITY
 * waits forever. Any other negative value is refused with GS_EINVAL.
 * Positive values above GS_TIMEOUT_MAX_MS are refused with GS_EINVAL. */
#define GS_INFINITY (-1)
#define GS_TIMEOUT_MAX_MS (7 * 24 * 3600 * 1000) /* one week */

/* ---- Error codes: all negative and distinct ------------------------- */
#define GS_EINVAL (-1)     /* an argument is invalid (NULL, out of range) */
#define GS_ENOMEM (-2)     /* memory could not be allocated */
#define GS_ENOPROC (-3)    /* no such server (never existed, or stopped) */
#define GS_ETIMEDOUT (-4)  /* the timeout passed */
#define GS_EDEADLK (-5)    /* the operation would wait on itself */
#define GS_EMSGSIZE (-6)   /* a message or reply is too large */
#define GS_ESHUTDOWN (-7)  /* the runtime is shutting down */
#define GS_ECANCELED (-8)  /* init refused to start (returned GS_STOP) */
#define GS_ENOENT (-9)     /* no such entry (reply already given, caller gone, ...) */
#define GS_EEXIST (-10)    /* the entry already exists */
#define GS_EAGAIN (-11)    /* resource temporarily unavailable, try again */
#define GS_ENOREPLY (-12)  /* handle_call returned GS_OK without replying */
#define GS_ENOTSUP (-13)   /* the server has no handler for this request */
#define GS_ELIMIT (-14)    /* a hard limit of the runtime was reached */
#define GS_EBADRETURN (-15) /* a callback returned a value it may not return */
#define GS_EKILLED (-16)   /* the calling server was killed (gs_kill): its callback should return */

/* The sentence for a status code or exit reason. Never NULL; the string
 * is static. Unknown negative codes give "unknown error", positive values
 * other than the defined ones give "user-defined reason". */
const char *gs_strerror(int status);

#ifdef __cplusplus
}
#endif
#endif /* GENSERVER_STATUS_H */
