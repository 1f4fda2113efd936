
/*
 * Copyright (C) ngx-realtime developers
 *
 * What the libFuzzer targets share: ensure(), which aborts on a broken
 * invariant so that libFuzzer keeps the input that broke it.
 */


#ifndef _FUZZ_H_INCLUDED_
#define _FUZZ_H_INCLUDED_


#include <stdlib.h>


#define ensure(cond)                                                          \
    do {                                                                      \
        if (!(cond)) {                                                        \
            abort();                                                          \
        }                                                                     \
    } while (0)


#endif /* _FUZZ_H_INCLUDED_ */
