/* SPDX-License-Identifier: MIT */
/*
 * Replays a fuzz corpus through a fuzz target without libFuzzer, so that every committed input
 * runs in the normal test build (gcc, ASan, UBSan). Usage: replay_TARGET DIR...
 * Prints TAP: one test point per input file; a crash or sanitizer report fails the suite.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	int n = 0, bad = 0;
	for (int i = 1; i < argc; i++) {
		DIR *dir = opendir(argv[i]);
		if (!dir) {
			printf("not ok %d - open corpus %s\n", ++n, argv[i]);
			bad = 1;
			continue;
		}
		char **names = NULL;
		size_t count = 0, cap = 0;
		struct dirent *e;
		while ((e = readdir(dir))) {
			if (e->d_name[0] == '.')
				continue;
			if (count == cap) {
				cap = cap ? cap * 2 : 64;
				char **grown = realloc(names, cap * sizeof *names);
				if (!grown)
					abort();
				names = grown;
			}
			names[count++] = strdup(e->d_name);
		}
		closedir(dir);
		qsort(names, count, sizeof *names, cmp_names);
		for (size_t k = 0; k < count; k++) {
			char path[4096];
			snprintf(path, sizeof path, "%s/%s", argv[i], names[k]);
			FILE *f = fopen(path, "rb");
			uint8_t *buf = NULL;
			long len = -1;
			if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
			    fseek(f, 0, SEEK_SET) == 0) {
				/* An exact-size heap copy, so ASan catches any over-read. */
				buf = malloc(len ? (size_t)len : 1);
				if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len)
					len = -1;
			}
			if (f)
				fclose(f);
			if (!buf || len < 0) {
				printf("not ok %d - read %s\n", ++n, path);
				bad = 1;
			} else {
				LLVMFuzzerTestOneInput(buf, (size_t)len);
				printf("ok %d - replay %s\n", ++n, path);
			}
			free(buf);
			free(names[k]);
			fflush(stdout);
		}
		free(names);
	}
	printf("1..%d\n", n);
	return bad;
}
