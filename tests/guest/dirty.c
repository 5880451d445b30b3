/*
 * livemig-dirty: keeps writing to a working set of memory at a fixed rate,
 * so that live migration has dirty pages to chase (convergence tests).
 *
 * usage: livemig-dirty RATE_MIB_PER_S [WORKING_SET_MIB]
 *
 * Every 10 ms it writes one byte into each of the next RATE*1MiB/4KiB/100
 * pages of the working set, round robin, so RATE MiB of distinct pages are
 * dirtied per second (as long as RATE <= WORKING_SET per second).
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE 4096UL
#define MIB (1024UL * 1024UL)
#define TICK_NS 10000000L /* 10 ms */

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s RATE_MIB_PER_S [WORKING_SET_MIB]\n", argv[0]);
		return 2;
	}
	double rate = strtod(argv[1], NULL);
	unsigned long ws_mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 32;
	if (rate <= 0 || ws_mib == 0)
		return 0;
	size_t ws = ws_mib * MIB;
	unsigned long npages = ws / PAGE;
	volatile unsigned char *buf = malloc(ws);
	if (!buf) {
		perror("malloc");
		return 1;
	}
	memset((void *)buf, 1, ws);
	/* pages per tick as a fixed-point accumulator: rates below 1 page/tick work too */
	double per_tick = rate * MIB / PAGE / (1000000000.0 / TICK_NS);
	double carry = 0;
	unsigned long next = 0;
	unsigned char generation = 2;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	printf("LIVEMIG-DIRTY: %.1f MiB/s over %lu MiB\n", rate, ws_mib);
	fflush(stdout);
	for (;;) {
		carry += per_tick;
		unsigned long n = (unsigned long)carry;
		carry -= n;
		while (n--) {
			buf[next * PAGE] = generation;
			if (++next == npages) {
				next = 0;
				generation++;
			}
		}
		t.tv_nsec += TICK_NS;
		if (t.tv_nsec >= 1000000000L) {
			t.tv_nsec -= 1000000000L;
			t.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
	}
}
