/* unit.h — a tiny TAP emitter for the plain-C unit tests. */
#ifndef PRIVACY_UNIT_H
#define PRIVACY_UNIT_H

#include <stdio.h>

static int	unit_n = 0;
static int	unit_failed = 0;

#define CHECK(cond, desc) \
	do { \
		unit_n++; \
		if (cond) \
			printf("ok %d - %s\n", unit_n, desc); \
		else \
		{ \
			unit_failed++; \
			printf("not ok %d - %s (%s:%d: %s)\n", unit_n, desc, __FILE__, __LINE__, #cond); \
		} \
	} while (0)

#define UNIT_DONE() \
	do { printf("1..%d\n", unit_n); return unit_failed ? 1 : 0; } while (0)

#endif
