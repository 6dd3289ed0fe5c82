/* SPDX-License-Identifier: MIT */
/* uw_hworker.c - a device's blocking libusb calls off the loop thread (uw_hworker.h). */
#include "uw_hworker.h"

#include <signal.h>
#include <stddef.h>

static void fin_unlink(uw_hworker *w, uw_hjob *j)
{
	uw_hjob **pp = &w->fin_head, *prev = NULL;
	while (*pp && *pp != j) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = j->next;
	if (w->fin_tail == j)
		w->fin_tail = prev;
	j->next = NULL;
}

/* On the loop thread: the posted completion of one job. */
static void done_task(void *arg)
{
	uw_hjob *j = arg;
	uw_hworker *w = j->w;
	pthread_mutex_lock(&w->lock);
	bool mine = j->finished;
	if (mine) {
		j->finished = false;
		fin_unlink(w, j);
	}
	pthread_mutex_unlock(&w->lock);
	if (mine)
		j->done(j);
}

static void *thread_main(void *arg)
{
	uw_hworker *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->head && !w->stop)
			pthread_cond_wait(&w->work, &w->lock);
		if (!w->head)
			break; /* stop, and nothing left */
		uw_hjob *j = w->head;
		w->head = j->next;
		if (!w->head)
			w->tail = NULL;
		j->next = NULL;
		w->running = true;
		pthread_mutex_unlock(&w->lock);
		j->run(j);
		pthread_mutex_lock(&w->lock);
		w->running = false;
		j->finished = true;
		if (w->fin_tail)
			w->fin_tail->next = j;
		else
			w->fin_head = j;
		w->fin_tail = j;
		j->task = (uw_loop_task){done_task, j, NULL};
		uw_loop_post_task(w->loop, &j->task);
		if (!w->head)
			pthread_cond_broadcast(&w->idle);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

void uw_hworker_init(uw_hworker *w, uw_loop *loop)
{
	*w = (uw_hworker){.loop = loop};
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->work, NULL);
	pthread_cond_init(&w->idle, NULL);
}

bool uw_hworker_submit(uw_hworker *w, uw_hjob *j)
{
	if (!w->started) {
		/* The thread takes no signals: the loop thread handles them. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		w->stop = false;
		int r = pthread_create(&w->thread, NULL, thread_main, w);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (r != 0)
			return false;
		w->started = true;
	}
	j->w = w;
	j->next = NULL;
	j->finished = false;
	pthread_mutex_lock(&w->lock);
	if (w->tail)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->lock);
	return true;
}

bool uw_hworker_busy(uw_hworker *w)
{
	pthread_mutex_lock(&w->lock);
	bool busy = w->head || w->running || w->fin_head;
	pthread_mutex_unlock(&w->lock);
	return busy;
}

void uw_hworker_drain(uw_hworker *w)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->head || w->running)
			pthread_cond_wait(&w->idle, &w->lock);
		uw_hjob *j = w->fin_head;
		if (!j)
			break; /* a done() may have queued more: then wait again */
		fin_unlink(w, j);
		j->finished = false;
		pthread_mutex_unlock(&w->lock);
		/* Its posted task has not run (it would have taken j off the list first). */
		uw_loop_cancel_task(w->loop, &j->task);
		j->done(j);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
}

void uw_hworker_fini(uw_hworker *w)
{
	uw_hworker_drain(w);
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_signal(&w->work);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
		w->started = false;
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->work);
	pthread_cond_destroy(&w->idle);
}
