/* SPDX-License-Identifier: MIT */
/*
 * uw_hworker.h - one thread per real device that runs its blocking libusb calls (port reset,
 * SET_CONFIGURATION, CLEAR_HALT, the reset after a session) in order, off the loop thread, and
 * hands each result back to the loop (docs/architecture.md, the libusb backend).
 *
 * A job's run() runs on the worker thread, then its done() on the loop thread, in submission
 * order. run() must not touch what the loop thread changes meanwhile; done() applies the result.
 * Threads: everything here on the loop thread, except that run() is on the worker.
 */
#ifndef UW_HWORKER_H
#define UW_HWORKER_H

#include <pthread.h>
#include <stdbool.h>

#include "uw_loop.h"

typedef struct uw_hjob uw_hjob;

struct uw_hjob {
	void (*run)(uw_hjob *j);  /* on the worker thread */
	void (*done)(uw_hjob *j); /* afterwards, on the loop thread */
	/* private */
	uw_hjob *next;
	struct uw_hworker *w;
	uw_loop_task task;
	bool finished; /* run() returned, done() not yet called */
};

typedef struct uw_hworker {
	uw_loop *loop;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t work, idle;
	uw_hjob *head, *tail;         /* waiting for the thread */
	uw_hjob *fin_head, *fin_tail; /* run, done() posted */
	bool running;                 /* the thread has a job */
	bool stop;
	bool started;
} uw_hworker;

/** uw_hworker_init() - prepare w (no thread yet). */
void uw_hworker_init(uw_hworker *w, uw_loop *loop);
/** uw_hworker_submit() - queue j (run, done set); starts the thread on first use. Returns false
 * if no thread could be started: j was then not queued (the caller runs it itself). */
bool uw_hworker_submit(uw_hworker *w, uw_hjob *j);
/** uw_hworker_busy() - whether a submitted job's done() has not been called yet. */
bool uw_hworker_busy(uw_hworker *w);
/** uw_hworker_drain() - until no job is left: wait for the submitted jobs to run and call the
 * done() of those whose done() has not run yet, in order (a done() may submit more). Blocks the
 * loop thread: only for teardown, or an import that must wait for the device. */
void uw_hworker_drain(uw_hworker *w);
/** uw_hworker_fini() - drain, then stop and join the thread. */
void uw_hworker_fini(uw_hworker *w);

#endif /* UW_HWORKER_H */
