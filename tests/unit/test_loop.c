/* SPDX-License-Identifier: MIT */
/*
 * test_loop.c - the event loop's post queue: order, cancelling a task of the same round (it must
 * not run, so its owner may free it), and a task that re-posts itself not starving others.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "uw_loop.h"
#include "uw_test.h"

static uw_loop *loop;
static char trace[64];
static size_t ntrace;

struct rec {
	uw_loop_task t;
	char name;
	uw_loop_task *victim; /* cancelled (and scribbled on) when this one runs */
	int reposts;          /* times it posts itself again */
};

static void rec_run(void *arg)
{
	struct rec *r = arg;
	if (ntrace < sizeof trace - 1)
		trace[ntrace++] = r->name;
	if (r->victim) {
		uw_loop_cancel_task(loop, r->victim);
		/* What an owner does next: free it. Scribble instead, so a later run shows. */
		r->victim->fn = NULL;
		r->victim->arg = NULL;
	}
	if (r->reposts > 0) {
		r->reposts--;
		uw_loop_post_task(loop, &r->t);
	}
}

static void stop_task(void *arg)
{
	(void)arg;
	uw_loop_stop(loop);
}

static void rec_init(struct rec *r, char name)
{
	*r = (struct rec){.t = {rec_run, r, NULL}, .name = name};
}

int main(void)
{
	loop = uw_loop_new();
	struct rec a, b, c;
	rec_init(&a, 'a');
	rec_init(&b, 'b');
	rec_init(&c, 'c');
	a.victim = &b.t;
	uw_loop_post_task(loop, &a.t);
	uw_loop_post_task(loop, &b.t);
	uw_loop_post_task(loop, &c.t);
	uw_loop_timer_add(loop, 50, stop_task, NULL);
	uw_loop_run(loop);
	trace[ntrace] = '\0';
	t_ok(!strcmp(trace, "ac"),
	     "a task cancelled by an earlier one of the same round does not "
	     "run (ran \"%s\")",
	     trace);

	/* A task that re-posts itself 1000 times, and a timer: the timer still fires, and the
	 * task runs once per round, not 1000 times in one. */
	ntrace = 0;
	rec_init(&a, 'r');
	a.reposts = 1000;
	uw_loop_post_task(loop, &a.t);
	uw_loop_timer_add(loop, 0, stop_task, NULL);
	uw_loop_run(loop);
	t_ok(a.reposts > 0, "a self-re-posting task leaves room for a due timer (%d re-posts left)",
	     a.reposts);
	uw_loop_cancel_task(loop, &a.t);
	uw_loop_free(loop);
	return t_done();
}
