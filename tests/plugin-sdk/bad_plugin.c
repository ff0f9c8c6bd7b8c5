/*
 * bad_plugin.c: a hasher plugin built wrong on purpose, one way per macro, for the loader
 * tests: sesamed must refuse each before it calls any of its code.
 *
 *   -DWRONG_MAGIC      another magic number
 *   -DABI_MAJOR=N      built for another ABI major
 *   -DABI_MINOR=N      built for another ABI minor (with -DEXTRA_TAIL: a newer one)
 *   -DTRUNCATED        exports the header alone
 *   -DSHORT            its header says it is a pointer shorter than its kind's descriptor
 *   -DNO_VERIFY        lacks a function its kind requires
 *   -DWRONG_NAME       names itself differently from its file
 *   -DEXTRA_TAIL       a newer minor's descriptor: a member this sesamed does not know at the
 *                      end, which sesamed must ignore (the plugin then loads and works)
 * With none of them, it is a working hasher that stores passwords as "plain$PASSWORD" (for
 * the tests only), its descriptor defined as every plugin's is, with its kind's macro.
 */
#include <sesame/plugin.h>

#include <stdio.h>
#include <string.h>

#if defined(WRONG_MAGIC) || defined(ABI_MAJOR) || defined(ABI_MINOR) || defined(TRUNCATED) ||      \
    defined(WRONG_NAME) || defined(SHORT) || defined(NO_VERIFY) || defined(EXTRA_TAIL)
#define FORGED /* a header built by hand: the kind's macro would build it right */
#endif
#ifndef ABI_MAJOR
#define ABI_MAJOR SESAME_PLUGIN_ABI_MAJOR
#endif
#ifndef ABI_MINOR
#define ABI_MINOR SESAME_PLUGIN_ABI_MINOR
#endif
#ifdef WRONG_MAGIC
#define MAGIC 0x12345678U
#else
#define MAGIC SESAME_PLUGIN_MAGIC
#endif
#ifdef WRONG_NAME
#define NAME "another"
#else
#define NAME PLUGIN_NAME
#endif

static int init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	/* Loud on purpose: a test fails if this line appears for a plugin that must be refused. */
	host->log(host, SESAME_LOG_WARN, "bad_plugin code ran");
	*state = NULL;
	return 0;
}

static void fini(void *state)
{
}

static int hash(void *state, const char *password, size_t len, char *out, size_t outlen)
{
	return snprintf(out, outlen, "plain$%.*s", (int)len, password) < (int)outlen ? 0 : -1;
}

static int verify(void *state, const char *password, size_t len, const char *stored)
{
	return strncmp(stored, "plain$", 6) == 0 && strlen(stored + 6) == len &&
	       memcmp(stored + 6, password, len) == 0;
}

static bool identify(void *state, const char *stored)
{
	return strncmp(stored, "plain$", 6) == 0;
}

static bool needs_rehash(void *state, const char *stored)
{
	return false;
}

#ifdef SHORT
#define SIZE (sizeof(struct sesame_hasher) - sizeof(void *))
#else
#define SIZE sizeof(struct sesame_hasher)
#endif
#ifdef NO_VERIFY
#define VERIFY NULL
#else
#define VERIFY verify
#endif

#if defined(TRUNCATED)
SESAME_PLUGIN_EXPORT const struct sesame_plugin_header sesame_plugin = {
    MAGIC, ABI_MAJOR, ABI_MINOR, sizeof(struct sesame_hasher), SESAME_PLUGIN_HASHER, NAME, "1"};
#elif defined(EXTRA_TAIL)
static int later(void)
{
	return 0;
}

SESAME_PLUGIN_EXPORT const struct newer_hasher {
	struct sesame_hasher known;
	int (*later)(void);
} sesame_plugin = {
    .known = {.header = {MAGIC, ABI_MAJOR, ABI_MINOR, sizeof(struct newer_hasher),
			 SESAME_PLUGIN_HASHER, NAME, "1"},
	      .init = init,
	      .fini = fini,
	      .hash = hash,
	      .verify = verify,
	      .identify = identify,
	      .needs_rehash = needs_rehash},
    .later = later,
};
#elif defined(FORGED)
SESAME_PLUGIN_EXPORT const struct sesame_hasher sesame_plugin = {
    .header = {MAGIC, ABI_MAJOR, ABI_MINOR, SIZE, SESAME_PLUGIN_HASHER, NAME, "1"},
    .init = init,
    .fini = fini,
    .hash = hash,
    .verify = VERIFY,
    .identify = identify,
    .needs_rehash = needs_rehash,
};
#else
SESAME_HASHER_PLUGIN(PLUGIN_NAME, "1", .init = init, .fini = fini, .hash = hash, .verify = verify,
		     .identify = identify, .needs_rehash = needs_rehash);
#endif
