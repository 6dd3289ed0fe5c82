/* SPDX-License-Identifier: MIT */
#include "uw_dialer.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "uw_error.h"

#define CONNECT_TIMEOUT_MS 10000
#define BACKOFF_MIN_MS     1000u
#define BACKOFF_MAX_MS     60000u
#define MAX_IDLE           16u    /* idle connections at once, whatever the number of devices */
#define STABLE_MS          30000u /* a session this long resets the backoff */

struct result {
	struct result *next;
	uw_dialer *d;
	uw_loop_task task;
	int fd; /* -1: failed, see err */
	int rc;
	char err[512];
};

/* One dialed connection, from the server's hand-off until it closes. */
struct conn {
	struct conn *next, *prev;
	uw_dialer *d;
	bool imported;
	uint64_t imported_at; /* CLOCK_MONOTONIC ms */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct uw_dialer {
	uw_loop *loop;
	uw_server *srv;
	uw_addr addr;
	char name[UW_ADDR_PATH_MAX + 300];
	uw_logger log;

	/* Loop thread only. */
	unsigned idle;    /* connections handed to the server, not yet imported or closed */
	unsigned dialing; /* dials asked of the thread, result not handled yet */
	unsigned backoff_ms;
	uw_timer *retry;   /* the next dial waits for this */
	uw_loop_task kick; /* reconcile(), posted from inside server callbacks */
	bool kick_posted;
	bool stopped;
	unsigned failures;  /* dials failed in a row */
	char last_err[512]; /* the last failure logged */
	struct conn *conns;

	/* Shared with the thread, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned want; /* dials to make */
	bool quit;
	struct result *results; /* posted to the loop, not handled yet */
	pthread_t thread;
};

#define LOG(d, lvl, ...) uw_logf(&(d)->log, lvl, __VA_ARGS__)

static void reconcile(uw_dialer *d);
static void on_result(void *arg);

static void *dial_thread(void *arg)
{
	uw_dialer *d = arg;
	pthread_mutex_lock(&d->lock);
	for (;;) {
		while (!d->quit && d->want == 0)
			pthread_cond_wait(&d->cond, &d->lock);
		if (d->quit)
			break;
		d->want--;
		pthread_mutex_unlock(&d->lock);
		struct result *r = calloc(1, sizeof *r);
		int fd = -1;
		char err[512] = "";
		int rc = uw_addr_connect(&d->addr, CONNECT_TIMEOUT_MS, &fd, err, sizeof err);
		if (rc == UW_OK)
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		pthread_mutex_lock(&d->lock);
		if (!r) {
			/* No memory to report with: give the dial back, try again later. */
			if (fd >= 0)
				close(fd);
			d->want++;
			pthread_mutex_unlock(&d->lock);
			sleep(1);
			pthread_mutex_lock(&d->lock);
			continue;
		}
		r->d = d;
		r->fd = rc == UW_OK ? fd : -1;
		r->rc = rc;
		snprintf(r->err, sizeof r->err, "%s", err);
		r->next = d->results;
		d->results = r;
		r->task.fn = on_result;
		r->task.arg = r;
		uw_loop_post_task(d->loop, &r->task);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

static void on_retry(void *arg)
{
	uw_dialer *d = arg;
	d->retry = NULL;
	reconcile(d);
}

static void schedule_retry(uw_dialer *d)
{
	if (d->retry || d->stopped)
		return;
	d->retry = uw_loop_timer_add(d->loop, d->backoff_ms, on_retry, d);
	d->backoff_ms = d->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d->backoff_ms * 2;
}

static void on_kick(void *arg)
{
	uw_dialer *d = arg;
	d->kick_posted = false;
	reconcile(d);
}

static void kick(uw_dialer *d)
{
	if (d->kick_posted)
		return;
	d->kick_posted = true;
	d->kick.fn = on_kick;
	d->kick.arg = d;
	uw_loop_post_task(d->loop, &d->kick);
}

/* Called by the server, from inside it: only bookkeeping here, the rest from a task. */
static void on_conn(void *arg, enum uw_conn_event ev)
{
	struct conn *c = arg;
	uw_dialer *d = c->d;
	if (ev == UW_CONN_IMPORTED) {
		c->imported = true;
		c->imported_at = mono_ms();
		d->idle--;
		kick(d);
		return;
	}
	if (!c->imported) {
		/* Ended in the op phase: a device list, a refusal, or the peer left. Dialing again
		 * at once could spin against a peer that closes everything; wait first. */
		d->idle--;
	} else if (mono_ms() - c->imported_at >= STABLE_MS) {
		/* A session that lasted: the next one starts the backoff over. */
		d->backoff_ms = BACKOFF_MIN_MS;
	}
	/* Either way the next dial waits, and the wait doubles while sessions stay short: a peer
	 * that imports and leaves at once cannot drive an import/release loop (for a real
	 * device, a claim and a reset each time). */
	schedule_retry(d);
	if (c->prev)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
	kick(d);
}

/* A dial's result, on the loop thread. */
static void on_result(void *arg)
{
	struct result *r = arg;
	uw_dialer *d = r->d;
	pthread_mutex_lock(&d->lock);
	for (struct result **pp = &d->results; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	pthread_mutex_unlock(&d->lock);
	d->dialing--;
	int fd = r->fd;
	char err[512];
	snprintf(err, sizeof err, "%s", r->err);
	free(r);
	if (d->stopped) {
		if (fd >= 0)
			close(fd);
		return;
	}
	if (fd < 0) {
		/* The first failure and every change of reason are logged; repeats are not. */
		d->failures++;
		if (d->failures == 1 || strcmp(err, d->last_err) != 0)
			LOG(d, UW_LOG_WARN,
			    "reverse connection: %s; trying again (every %u s at most)", err,
			    BACKOFF_MAX_MS / 1000);
		snprintf(d->last_err, sizeof d->last_err, "%s", err);
		schedule_retry(d);
		return;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		schedule_retry(d);
		return;
	}
	c->d = d;
	if (uw_server_add_connection_watched(d->srv, fd, on_conn, c) != UW_OK) {
		free(c); /* the server closed fd (it never calls the watch of a refused one) */
		schedule_retry(d);
		return;
	}
	c->next = d->conns;
	if (d->conns)
		d->conns->prev = c;
	d->conns = c;
	d->idle++;
	if (d->failures)
		LOG(d, UW_LOG_INFO,
		    "reverse connection: connected to %s again after %u failed "
		    "attempts",
		    d->name, d->failures);
	else
		LOG(d, UW_LOG_DEBUG, "reverse connection: connected to %s", d->name);
	d->failures = 0;
	d->last_err[0] = '\0';
	reconcile(d);
}

/* Dials until there is one idle connection per free device. */
static void reconcile(uw_dialer *d)
{
	if (d->stopped || d->retry)
		return;
	struct uw_server_stats st;
	uw_server_get_stats(d->srv, &st);
	unsigned free_devs = st.devices > st.imported ? st.devices - st.imported : 0;
	unsigned target = free_devs < MAX_IDLE ? free_devs : MAX_IDLE;
	unsigned have = d->idle + d->dialing;
	if (have >= target)
		return;
	unsigned n = target - have;
	d->dialing += n;
	pthread_mutex_lock(&d->lock);
	d->want += n;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

uw_dialer *uw_dialer_new(uw_loop *loop, uw_server *srv, const uw_addr *addr, uw_logger log)
{
	uw_dialer *d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	d->loop = loop;
	d->srv = srv;
	d->addr = *addr;
	d->log = log;
	d->backoff_ms = BACKOFF_MIN_MS;
	uw_addr_format(addr, d->name, sizeof d->name);
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	/* The thread takes no signals: they belong to the program's loop (signalfd). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int tr = pthread_create(&d->thread, NULL, dial_thread, d);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (tr != 0) {
		pthread_mutex_destroy(&d->lock);
		pthread_cond_destroy(&d->cond);
		free(d);
		return NULL;
	}
	return d;
}

void uw_dialer_changed(uw_dialer *d)
{
	reconcile(d);
}

void uw_dialer_stop(uw_dialer *d)
{
	if (!d)
		return;
	d->stopped = true;
	uw_loop_timer_cancel(d->loop, d->retry);
	d->retry = NULL;
	pthread_mutex_lock(&d->lock);
	d->want = 0;
	pthread_mutex_unlock(&d->lock);
}

void uw_dialer_free(uw_dialer *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->quit = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	/* A dial in progress finishes within its timeout. */
	pthread_join(d->thread, NULL);
	uw_loop_timer_cancel(d->loop, d->retry);
	uw_loop_cancel_task(d->loop, &d->kick);
	for (struct result *r = d->results, *next; r; r = next) {
		next = r->next;
		uw_loop_cancel_task(d->loop, &r->task);
		if (r->fd >= 0)
			close(r->fd);
		free(r);
	}
	/* Connections the server still had when it was freed (it calls no watch then). */
	for (struct conn *c = d->conns, *next; c; c = next) {
		next = c->next;
		free(c);
	}
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	free(d);
}
