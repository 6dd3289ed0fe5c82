/* SPDX-License-Identifier: MIT */
/*
 * uw_loop.c - epoll event loop with one-shot timers and a thread-safe post queue (eventfd).
 *
 * Watches are kept in a table indexed by fd, so a callback that deletes another fd's watch (or
 * its own) is safe: events for a deleted fd that were already returned by epoll_wait in the same
 * round are skipped by checking a per-watch generation.
 */
#include "uw_loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "uw_error.h"

struct watch {
	uw_io_fn fn;
	void *arg;
	uint64_t gen; /* 0: free */
};

struct uw_timer {
	uint64_t due;
	uint64_t seq; /* ties broken by creation order */
	uw_task_fn fn;
	void *arg;
	struct uw_timer *next;
};

/* uw_loop_post() allocates one of these; its task runs a trampoline that frees it first. */
struct heap_post {
	uw_loop_task task; /* first: a task pointer is the heap_post pointer */
	uw_task_fn fn;
	void *arg;
};

static void heap_post_run(void *arg)
{
	struct heap_post *p = arg;
	uw_task_fn fn = p->fn;
	void *fa = p->arg;
	free(p);
	fn(fa);
}

struct uw_loop {
	int epfd;
	int evfd;
	struct watch *watches;
	size_t nwatches;
	uint64_t gen;
	struct uw_timer *timers; /* sorted by (due, seq) */
	uint64_t timer_seq;
	uint64_t now;
	pthread_t thread;
	atomic_bool running; /* read by uw_loop_in_thread() on any thread */
	atomic_bool stop;    /* set from any thread */
	pthread_mutex_t post_lock;
	uw_loop_task *post_head, *post_tail;
	atomic_uint_fast64_t dispatched; /* fd callbacks run */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uw_loop *uw_loop_new(void)
{
	uw_loop *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || l->evfd < 0)
		goto fail;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = -1};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0)
		goto fail;
	pthread_mutex_init(&l->post_lock, NULL);
	l->now = mono_ms();
	return l;
fail:
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->evfd >= 0)
		close(l->evfd);
	free(l);
	return NULL;
}

void uw_loop_free(uw_loop *l)
{
	if (!l)
		return;
	while (l->timers) {
		struct uw_timer *t = l->timers;
		l->timers = t->next;
		free(t);
	}
	while (l->post_head) {
		uw_loop_task *t = l->post_head;
		l->post_head = t->next;
		if (t->fn == heap_post_run)
			free(t);
	}
	pthread_mutex_destroy(&l->post_lock);
	close(l->epfd);
	close(l->evfd);
	free(l->watches);
	free(l);
}

static uint32_t to_epoll(uint32_t events)
{
	uint32_t e = 0;
	if (events & UW_EV_IN)
		e |= EPOLLIN | EPOLLRDHUP;
	if (events & UW_EV_HUP)
		e |= EPOLLRDHUP;
	if (events & UW_EV_OUT)
		e |= EPOLLOUT;
	return e;
}

int uw_loop_add_fd(uw_loop *l, int fd, uint32_t events, uw_io_fn fn, void *arg)
{
	if (fd < 0 || !fn)
		return UW_E_INVAL;
	if ((size_t)fd >= l->nwatches) {
		size_t n = l->nwatches ? l->nwatches : 64;
		while (n <= (size_t)fd)
			n *= 2;
		struct watch *w = realloc(l->watches, n * sizeof *w);
		if (!w)
			return UW_E_NOMEM;
		memset(w + l->nwatches, 0, (n - l->nwatches) * sizeof *w);
		l->watches = w;
		l->nwatches = n;
	}
	if (l->watches[fd].gen)
		return UW_E_EXISTS;
	struct epoll_event ev = {.events = to_epoll(events), .data.fd = fd};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return errno == ENOMEM ? UW_E_NOMEM : UW_E_INVAL;
	l->watches[fd] = (struct watch){fn, arg, ++l->gen};
	return UW_OK;
}

int uw_loop_mod_fd(uw_loop *l, int fd, uint32_t events)
{
	if (fd < 0 || (size_t)fd >= l->nwatches || !l->watches[fd].gen)
		return UW_E_NOTFOUND;
	struct epoll_event ev = {.events = to_epoll(events), .data.fd = fd};
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? UW_E_INVAL : UW_OK;
}

void uw_loop_del_fd(uw_loop *l, int fd)
{
	if (fd < 0 || (size_t)fd >= l->nwatches || !l->watches[fd].gen)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	l->watches[fd].gen = 0;
}

uw_timer *uw_loop_timer_add(uw_loop *l, uint64_t ms, uw_task_fn fn, void *arg)
{
	struct uw_timer *t = malloc(sizeof *t);
	if (!t)
		return NULL;
	t->due = mono_ms() + ms;
	t->seq = ++l->timer_seq;
	t->fn = fn;
	t->arg = arg;
	struct uw_timer **pp = &l->timers;
	while (*pp && ((*pp)->due < t->due || ((*pp)->due == t->due && (*pp)->seq < t->seq)))
		pp = &(*pp)->next;
	t->next = *pp;
	*pp = t;
	return t;
}

void uw_loop_timer_cancel(uw_loop *l, uw_timer *t)
{
	if (!t)
		return;
	for (struct uw_timer **pp = &l->timers; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			free(t);
			return;
		}
	}
}

static void enqueue(uw_loop *l, uw_loop_task *t)
{
	t->next = NULL;
	pthread_mutex_lock(&l->post_lock);
	bool was_empty = l->post_head == NULL;
	if (l->post_tail)
		l->post_tail->next = t;
	else
		l->post_head = t;
	l->post_tail = t;
	pthread_mutex_unlock(&l->post_lock);
	if (was_empty) {
		uint64_t one = 1;
		/* A full counter (EAGAIN) still wakes the loop; nothing to do about a failure. */
		ssize_t n = write(l->evfd, &one, sizeof one);
		(void)n;
	}
}

int uw_loop_post(uw_loop *l, uw_task_fn fn, void *arg)
{
	struct heap_post *p = malloc(sizeof *p);
	if (!p)
		return UW_E_NOMEM;
	p->task.fn = heap_post_run;
	p->task.arg = p;
	p->fn = fn;
	p->arg = arg;
	enqueue(l, &p->task);
	return UW_OK;
}

void uw_loop_post_task(uw_loop *l, uw_loop_task *t)
{
	enqueue(l, t);
}

void uw_loop_cancel_task(uw_loop *l, uw_loop_task *t)
{
	pthread_mutex_lock(&l->post_lock);
	uw_loop_task *prev = NULL;
	for (uw_loop_task *c = l->post_head; c; prev = c, c = c->next) {
		if (c != t)
			continue;
		if (prev)
			prev->next = c->next;
		else
			l->post_head = c->next;
		if (l->post_tail == c)
			l->post_tail = prev;
		break;
	}
	pthread_mutex_unlock(&l->post_lock);
}

void uw_loop_stop(uw_loop *l)
{
	atomic_store(&l->stop, true);
	uint64_t one = 1;
	ssize_t n = write(l->evfd, &one, sizeof one);
	(void)n;
}

bool uw_loop_in_thread(const uw_loop *l)
{
	return l->running && pthread_equal(l->thread, pthread_self());
}

uint64_t uw_loop_dispatched(uw_loop *l)
{
	return (uint64_t)atomic_load_explicit(&l->dispatched, memory_order_relaxed);
}

uint64_t uw_loop_now_ms(uw_loop *l)
{
	return l->now;
}

/* Runs as many tasks as were queued when the round began, one at a time off the shared queue,
 * so that a task may cancel (then free) another that has not run yet. A task posted meanwhile
 * may take the place of one that was cancelled; the rest wait for the next round, so a task
 * that re-posts itself cannot starve the file descriptors. */
static void run_posts(uw_loop *l)
{
	uint64_t v;
	ssize_t n = read(l->evfd, &v, sizeof v);
	(void)n;
	size_t count = 0;
	pthread_mutex_lock(&l->post_lock);
	for (uw_loop_task *t = l->post_head; t; t = t->next)
		count++;
	pthread_mutex_unlock(&l->post_lock);
	for (size_t i = 0; i < count; i++) {
		pthread_mutex_lock(&l->post_lock);
		uw_loop_task *t = l->post_head;
		if (t) {
			l->post_head = t->next;
			if (!l->post_head)
				l->post_tail = NULL;
		}
		pthread_mutex_unlock(&l->post_lock);
		if (!t)
			break;
		t->fn(t->arg);
	}
	pthread_mutex_lock(&l->post_lock);
	bool more = l->post_head != NULL;
	pthread_mutex_unlock(&l->post_lock);
	if (more) { /* posted meanwhile: their wake-up was skipped (the queue was not empty) */
		uint64_t one = 1;
		ssize_t w = write(l->evfd, &one, sizeof one);
		(void)w;
	}
}

/* Runs the timers due now that existed when the round began (round_seq): one added during the
 * round - by an fd handler, a task or another timer - waits for the next round, whatever the
 * clock did meanwhile, so the order of events does not depend on a millisecond ticking over. */
static void run_timers(uw_loop *l, uint64_t round_seq)
{
	uint64_t now = l->now;
	uint64_t last_seq = round_seq;
	while (l->timers && l->timers->due <= now && l->timers->seq <= last_seq) {
		struct uw_timer *t = l->timers;
		l->timers = t->next;
		uw_task_fn fn = t->fn;
		void *arg = t->arg;
		free(t);
		fn(arg);
	}
}

int uw_loop_run(uw_loop *l)
{
	l->thread = pthread_self();
	l->running = true;
	atomic_store(&l->stop, false);
	struct epoll_event evs[64];
	uint64_t gens[64];
	while (!atomic_load(&l->stop)) {
		int timeout = -1;
		l->now = mono_ms();
		if (l->timers)
			timeout = l->timers->due <= l->now ? 0 : (int)(l->timers->due - l->now);
		uint64_t round_seq = l->timer_seq;
		int n = epoll_wait(l->epfd, evs, 64, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			l->running = false;
			return UW_E_IO;
		}
		l->now = mono_ms();
		/* Remember which watch each event was for, so deleted/replaced ones are skipped. */
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			gens[i] = fd >= 0 && (size_t)fd < l->nwatches ? l->watches[fd].gen : 0;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd < 0) {
				run_posts(l);
				continue;
			}
			if ((size_t)fd >= l->nwatches || !gens[i] || l->watches[fd].gen != gens[i])
				continue;
			uint32_t e = 0;
			if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
				e |= UW_EV_IN;
			if (evs[i].events & (EPOLLRDHUP | EPOLLHUP))
				e |= UW_EV_HUP;
			if (evs[i].events & EPOLLOUT)
				e |= UW_EV_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				e |= UW_EV_ERR;
			struct watch w = l->watches[fd];
			atomic_fetch_add_explicit(&l->dispatched, 1, memory_order_relaxed);
			w.fn(w.arg, e);
		}
		run_timers(l, round_seq);
	}
	l->running = false;
	return UW_OK;
}
