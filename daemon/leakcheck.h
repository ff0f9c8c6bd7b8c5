/*
 * leakcheck.h: the leak check of a process that ends with _exit.
 *
 * A forked child (a worker, a migration) ends with _exit, so that it runs none of the atexit
 * handlers and flushes none of the stdio buffers it inherited from the master. LeakSanitizer
 * runs from an atexit handler too, so on a sanitizer build such a child asks for the check
 * itself before it leaves: a leak in a worker then fails the test suite as one in the master
 * does (the report goes to stderr, and the child exits with LeakSanitizer's exit code). On
 * any other build this is _exit.
 */
#ifndef SESAME_LEAKCHECK_H
#define SESAME_LEAKCHECK_H

#include <unistd.h>

/* GCC says -fsanitize=address with __SANITIZE_ADDRESS__, older clang only with __has_feature. */
#if defined(__SANITIZE_ADDRESS__)
#define LEAKCHECK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LEAKCHECK_ASAN 1
#endif
#endif

#ifdef LEAKCHECK_ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* Ends a forked child with status, after the leak check on a sanitizer build. */
static inline _Noreturn void leakcheck_exit(int status)
{
#ifdef LEAKCHECK_ASAN
	__lsan_do_leak_check();
#endif
	_exit(status);
}

#endif
