/* SPDX-License-Identifier: MIT */
/*
 * uw_loop.h - the event loop every usbwire program runs on: one thread, epoll, timers, and a
 * thread-safe way for other threads (libusb's event thread, storage workers) to hand work back.
 *
 * Everything here except uw_loop_post() and uw_loop_stop() must be called on the loop's thread.
 */
#ifndef UW_LOOP_H
#define UW_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct uw_loop uw_loop;
typedef struct uw_timer uw_timer;

/* Events. UW_EV_HUP: the peer hung up or half-closed (EPOLLHUP/EPOLLRDHUP); it is reported
 * together with UW_EV_IN (a read then sees the end), and can be watched on its own, without
 * UW_EV_IN, by a reader that has paused. */
enum { UW_EV_IN = 1u << 0, UW_EV_OUT = 1u << 1, UW_EV_ERR = 1u << 2, UW_EV_HUP = 1u << 3 };

/* Called on the loop thread with the UW_EV_* bits that are ready. */
typedef void (*uw_io_fn)(void *arg, uint32_t events);
typedef void (*uw_task_fn)(void *arg);

/** uw_loop_new() - a new loop. Returns NULL on failure (errno set). Free with uw_loop_free(). */
uw_loop *uw_loop_new(void);
/** uw_loop_free() - frees the loop; fds are not closed, pending timers and posts are dropped. */
void uw_loop_free(uw_loop *l);

/** uw_loop_add_fd() - watch fd for events. Returns 0 or a negative uw_err. */
int uw_loop_add_fd(uw_loop *l, int fd, uint32_t events, uw_io_fn fn, void *arg);
/** uw_loop_mod_fd() - change the events watched on fd. Returns 0 or a negative uw_err. */
int uw_loop_mod_fd(uw_loop *l, int fd, uint32_t events);
/** uw_loop_del_fd() - stop watching fd (call before closing it). Safe inside callbacks. */
void uw_loop_del_fd(uw_loop *l, int fd);

/**
 * uw_loop_timer_add() - run fn(arg) once, ms milliseconds from now. Returns a handle for
 * uw_loop_timer_cancel(), or NULL on allocation failure. The handle is freed after fn runs.
 */
uw_timer *uw_loop_timer_add(uw_loop *l, uint64_t ms, uw_task_fn fn, void *arg);
/** uw_loop_timer_cancel() - cancel a timer that has not fired; NULL is ignored. */
void uw_loop_timer_cancel(uw_loop *l, uw_timer *t);

/**
 * uw_loop_post() - run fn(arg) on the loop thread soon. Thread-safe; callable from any thread
 * and from signal-free contexts. Posts run in order. Returns 0 or UW_E_NOMEM.
 */
int uw_loop_post(uw_loop *l, uw_task_fn fn, void *arg);

/* A post whose storage the caller owns: posting cannot fail. The caller must not post the same
 * task again before it has run (keep a flag). */
typedef struct uw_loop_task {
	uw_task_fn fn;
	void *arg;
	struct uw_loop_task *next;
} uw_loop_task;

/** uw_loop_post_task() - like uw_loop_post() with caller storage t (fn, arg set). Thread-safe. */
void uw_loop_post_task(uw_loop *l, uw_loop_task *t);
/** uw_loop_cancel_task() - withdraw t if it is posted and has not run. Thread-safe. */
void uw_loop_cancel_task(uw_loop *l, uw_loop_task *t);

/** uw_loop_run() - dispatch events until uw_loop_stop(). Returns 0 or a negative uw_err. */
int uw_loop_run(uw_loop *l);
/** uw_loop_stop() - make uw_loop_run() return after the current dispatch. Thread-safe. */
void uw_loop_stop(uw_loop *l);
/** uw_loop_in_thread() - true when called on the thread running uw_loop_run(). */
bool uw_loop_in_thread(const uw_loop *l);
/** uw_loop_dispatched() - how many fd callbacks have run (any thread; for tests and
 * diagnostics: a busy loop shows as a count that races ahead). */
uint64_t uw_loop_dispatched(uw_loop *l);
/** uw_loop_now_ms() - monotonic milliseconds (cached per dispatch round). */
uint64_t uw_loop_now_ms(uw_loop *l);

#endif /* UW_LOOP_H */
