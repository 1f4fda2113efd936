
/*
 * Copyright (C) ngx-realtime developers
 *
 * The harness shared by the unit test programs: CHECK and CHECK_AT,
 * test_begin and test_end around each test, the pass and fail counts,
 * the final "N passed, N failed" line and allocation that exits on
 * failure.
 *
 * A program that says where in a test a check failed defines
 * UNIT_WHERE_SIZE before including this file and writes the place
 * into test_where; test_begin empties it and a failure prints it in
 * brackets after the test name.
 */


#ifndef _UNIT_H_INCLUDED_
#define _UNIT_H_INCLUDED_


#include <stdio.h>
#include <stdlib.h>


#define MAX_REPORTS 5


static unsigned     tests_passed;
static unsigned     tests_failed;
static const char  *test_name;
static unsigned     test_errors;
#ifdef UNIT_WHERE_SIZE
static char         test_where[UNIT_WHERE_SIZE];
#endif


#define CHECK(cond)         CHECK_REPORT(__LINE__, cond, #cond)
#define CHECK_AT(line, cond)                                                  \
    CHECK_REPORT(line, cond, #cond)

#define CHECK_REPORT(line, cond, what)                                        \
    do {                                                                      \
        if (!(cond)) {                                                        \
            check_failed(line, what);                                         \
        }                                                                     \
    } while (0)


static inline void
check_failed(int line, const char *what)
{
    if (test_errors++ < MAX_REPORTS) {
#ifdef UNIT_WHERE_SIZE
        printf("FAIL: %s [%s] line %d: %s\n",
               test_name, test_where, line, what);
#else
        printf("FAIL: %s line %d: %s\n", test_name, line, what);
#endif
    }
}


static inline void
test_begin(const char *name)
{
    test_name = name;
    test_errors = 0;
#ifdef UNIT_WHERE_SIZE
    test_where[0] = '\0';
#endif
}


static inline void
test_end(void)
{
    if (test_errors == 0) {
        tests_passed++;
        return;
    }

    if (test_errors > MAX_REPORTS) {
        printf("FAIL: %s: %u more failures not shown\n",
               test_name, test_errors - MAX_REPORTS);
    }

    tests_failed++;
}


/* prints the counts; the exit status of main */

static inline int
test_summary(void)
{
    printf("%u passed, %u failed\n", tests_passed, tests_failed);

    return tests_failed ? 1 : 0;
}


static inline void *
xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);

    if (p == NULL) {
        printf("out of memory\n");
        exit(2);
    }

    return p;
}


static inline void *
xmalloc(size_t size)
{
    return xrealloc(NULL, size);
}


#endif /* _UNIT_H_INCLUDED_ */
