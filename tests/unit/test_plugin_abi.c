/*
 * test_plugin_abi.c: unit tests of the plugin loader's ABI checks (plugin_abi.c, plugin_open.c).
 *
 * Two halves. The mechanism of minors, with descriptors in memory checked against a kind table
 * of the test's own: a kind whose minor 1 added a member, so that a minor-0 descriptor (ABI
 * 1.0 is the first, so no real older minor exists yet) is smaller than this "sesamed"'s. The
 * minor-0 descriptor ends where a page that cannot be read begins: a loader that read past its
 * size would crash the test. And real shared objects, compiled by the test from
 * tests/plugin-sdk/bad_plugin.c with the compiler of the build, opened by the loader itself: a
 * newer minor with a tail sesamed does not know, a newer and an older major, truncated
 * descriptors and a missing function, each accepted or refused with its message.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "plugin_private.h"

/* ---- the mechanism, on a kind of the test's own ---- */

/* The validator's table as a sesamed of ABI 1.1 would know it, had 1.1 added extra. */
struct test_validator {
	struct sesame_plugin_header header;
	int (*init)(const struct sesame_host *host, struct sesame_config *cfg, void **state);
	void (*fini)(void *state);
	int (*check)(void *state, const char *value, size_t len, const char *const *related,
		     char *out, size_t outlen, char *msg, size_t msglen);
	int (*extra)(void *state);
};

static const struct plugin_member test_members[] = {
    {"init", offsetof(struct test_validator, init), 0, true},
    {"fini", offsetof(struct test_validator, fini), 0, true},
    {"check", offsetof(struct test_validator, check), 0, true},
    {"extra", offsetof(struct test_validator, extra), 1, true},
};

static const struct plugin_kind test_kinds[] = {
    {SESAME_PLUGIN_VALIDATOR, "validator", sizeof(struct test_validator), test_members, 4},
    {0, NULL, 0, NULL, 0},
};

static int t_init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	return 0;
}

static void t_fini(void *state)
{
}

static int t_check(void *state, const char *value, size_t len, const char *const *related,
		   char *out, size_t outlen, char *msg, size_t msglen)
{
	return 1;
}

static int t_extra(void *state)
{
	return 7;
}

#define MINOR0_SIZE offsetof(struct test_validator, extra)

static struct test_validator descriptor(unsigned minor, size_t size)
{
	return (struct test_validator){
	    .header = {SESAME_PLUGIN_MAGIC, SESAME_PLUGIN_ABI_MAJOR, (uint16_t)minor,
		       (uint32_t)size, SESAME_PLUGIN_VALIDATOR, "t", "1"},
	    .init = t_init,
	    .fini = t_fini,
	    .check = t_check,
	    .extra = t_extra,
	};
}

/* A page holding size bytes of d at its very end, followed by one that cannot be read. */
static void *at_page_end(const void *d, size_t size, void **map)
{
	long page = sysconf(_SC_PAGESIZE);
	char *m = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(mprotect(m + page, (size_t)page, PROT_NONE), 0);
	*map = m;
	memcpy(m + page - size, d, size);
	return m + page - size;
}

static void test_sizes_per_minor(void **state)
{
	assert_int_equal(plugin_abi_size(&test_kinds[0], 0), MINOR0_SIZE);
	assert_int_equal(plugin_abi_size(&test_kinds[0], 1), sizeof(struct test_validator));
	assert_int_equal(plugin_abi_size(&test_kinds[0], 9), sizeof(struct test_validator));
	/* ABI 1.1 added storage functions only: a 1.0 storage descriptor ends before them. */
	for (const struct plugin_kind *k = plugin_kinds; k->name != NULL; k++) {
		size_t old = k->kind == SESAME_PLUGIN_STORAGE
				 ? offsetof(struct sesame_storage, user_set_verified)
				 : k->size;
		assert_int_equal(plugin_abi_size(k, 0), old);
		assert_int_equal(plugin_abi_size(k, 1), k->size);
	}
}

static enum sesame_storage_result a_ping(void *state, char *err, size_t errlen)
{
	return SESAME_STORAGE_OK;
}

/* A storage plugin of ABI 1.0 loads: the functions of 1.1 read as absent (NULL). */
static void test_a_storage_plugin_of_abi_1_0_loads(void **state)
{
	const struct plugin_kind *k = &plugin_kinds[2];
	size_t size = offsetof(struct sesame_storage, user_set_verified);
	struct sesame_storage d;
	memset(&d, 0x5a, sizeof(d)); /* what lies past a 1.0 descriptor is not its */
	d.header = (struct sesame_plugin_header){SESAME_PLUGIN_MAGIC,
						 SESAME_PLUGIN_ABI_MAJOR,
						 0,
						 (uint32_t)size,
						 SESAME_PLUGIN_STORAGE,
						 "old",
						 "1"};
	void (**fn)(void) = (void (**)(void))((char *)&d + offsetof(struct sesame_storage, init));
	for (; (char *)fn < (char *)&d + size; fn++)
		*fn = (void (*)(void))a_ping;
	char why[256];
	void *map, *copy = NULL;
	const void *sym = at_page_end(&d, size, &map);
	assert_int_equal(k->kind, SESAME_PLUGIN_STORAGE);
	if (plugin_abi_check(plugin_kinds, sym, size, &copy, why, sizeof(why)) != 0)
		fail_msg("refused: %s", why);
	const struct sesame_storage *c = copy;
	assert_ptr_equal(c->ping, a_ping);
	assert_null(c->user_set_verified);
	assert_null(c->otp_spend);
	assert_null(c->query);
	free(copy);
	munmap(map, (size_t)sysconf(_SC_PAGESIZE) * 2);
	/* Built for 1.1 at the size of 1.0, it is truncated. */
	d.header.abi_minor = 1;
	sym = at_page_end(&d, size, &map);
	assert_int_equal(plugin_abi_check(plugin_kinds, sym, size, &copy, why, sizeof(why)), -1);
	munmap(map, (size_t)sysconf(_SC_PAGESIZE) * 2);
}

static void test_an_older_minor_is_read_to_its_size_only(void **state)
{
	struct test_validator d = descriptor(0, MINOR0_SIZE);
	void *map, *copy;
	char why[256] = "";
	const void *sym = at_page_end(&d, MINOR0_SIZE, &map);
	if (plugin_abi_check(test_kinds, sym, MINOR0_SIZE, &copy, why, sizeof(why)) != 0)
		fail_msg("refused: %s", why);
	const struct test_validator *c = copy;
	assert_ptr_equal(c->check, t_check);
	assert_int_equal(c->header.size, MINOR0_SIZE);
	assert_null(c->extra); /* a member its minor lacks is absent */
	free(copy);
	munmap(map, 2 * (size_t)sysconf(_SC_PAGESIZE));
}

static void test_a_member_is_required_from_its_minor_on(void **state)
{
	struct test_validator d = descriptor(1, sizeof(struct test_validator));
	void *copy;
	char why[256] = "";
	d.extra = NULL;
	assert_int_equal(plugin_abi_check(test_kinds, &d, sizeof(d), &copy, why, sizeof(why)), -1);
	assert_null(copy);
	assert_string_equal(why, "its validator descriptor lacks extra, required since ABI 1.1");
	d = descriptor(0, MINOR0_SIZE);
	d.check = NULL;
	assert_int_equal(plugin_abi_check(test_kinds, &d, MINOR0_SIZE, &copy, why, sizeof(why)),
			 -1);
	assert_string_equal(why, "its validator descriptor lacks check, required since ABI 1.0");
}

static void test_a_minor_1_descriptor_of_minor_0_size_is_truncated(void **state)
{
	struct test_validator d = descriptor(1, MINOR0_SIZE);
	void *copy;
	char why[256] = "", want[256];
	assert_int_equal(plugin_abi_check(test_kinds, &d, MINOR0_SIZE, &copy, why, sizeof(why)),
			 -1);
	snprintf(want, sizeof(want),
		 "its validator descriptor is truncated (it says %zu bytes, exports %zu; %zu "
		 "needed for ABI 1.1)",
		 MINOR0_SIZE, MINOR0_SIZE, sizeof(struct test_validator));
	assert_string_equal(why, want);
	/* A header that claims more than the symbol holds is truncated too. */
	d = descriptor(0, sizeof(d));
	assert_int_equal(plugin_abi_check(test_kinds, &d, MINOR0_SIZE, &copy, why, sizeof(why)),
			 -1);
	assert_non_null(strstr(why, "is truncated"));
	assert_int_equal(plugin_abi_check(test_kinds, &d, 12, &copy, why, sizeof(why)), -1);
	assert_string_equal(why, "its descriptor is truncated (12 bytes; the header alone is 32)");
}

/* ---- real plugins, built by the test and opened by the loader ---- */

struct opened {
	struct plugins *p;
	struct config_errors errs;
	char dir[64];
};

/* Compiles bad_plugin.c as DIR/NAME.so with defines, and opens it with plugin_open. */
static int open_built(struct opened *o, const char *name, const char *defines)
{
	char cmd[2048], path[256];
	snprintf(o->dir, sizeof(o->dir), "/tmp/test_plugin_abi.XXXXXX");
	assert_non_null(mkdtemp(o->dir));
	snprintf(path, sizeof(path), "%s/%s.so", o->dir, name);
	snprintf(cmd, sizeof(cmd),
		 "%s -shared -fPIC -fvisibility=hidden -I%s/daemon -DPLUGIN_NAME='\"%s\"' %s -o "
		 "%s %s/tests/plugin-sdk/bad_plugin.c",
		 TEST_CC, TEST_SRCDIR, name, defines, path, TEST_SRCDIR);
	if (system(cmd) != 0)
		fail_msg("cannot build the plugin: %s", cmd);
	o->p = calloc(1, sizeof(*o->p));
	o->p->v = calloc(1, sizeof(*o->p->v));
	assert_true(o->p != NULL && o->p->v != NULL);
	o->p->n = 1;
	struct loading ld = {.file = "test.lua", .dir = o->dir, .errs = &o->errs, .p = o->p};
	int rc = plugin_open(&ld, &o->p->v[0], path);
	unlink(path);
	rmdir(o->dir);
	return rc;
}

static void close_built(struct opened *o)
{
	plugins_free(o->p);
	config_errors_free(&o->errs);
}

/* The plugin is refused, with "plugin PATH: refused: " and message. */
static void assert_refused(const char *defines, const char *message)
{
	struct opened o = {0};
	char want[1024];
	assert_int_equal(open_built(&o, "bad", defines), -1);
	assert_int_equal(o.errs.n, 1);
	snprintf(want, sizeof(want), "plugin %s/bad.so: refused: %s", o.dir, message);
	assert_string_equal(o.errs.msg[0], want);
	close_built(&o);
}

static void test_a_newer_minor_loads_its_tail_ignored(void **state)
{
	struct opened o = {0};
	if (open_built(&o, "newer", "-DEXTRA_TAIL -DABI_MINOR=3") != 0)
		fail_msg("refused: %s", o.errs.msg[0]);
	const struct sesame_hasher *x = (const void *)o.p->v[0].h;
	assert_int_equal(x->header.abi_minor, 3);
	assert_int_equal(x->header.size, sizeof(struct sesame_hasher) + sizeof(void *));
	char out[64];
	assert_int_equal(x->hash(NULL, "pw", 2, out, sizeof(out)), 0);
	assert_string_equal(out, "plain$pw");
	assert_int_equal(x->verify(NULL, "pw", 2, out), 1);
	close_built(&o);
}

static void test_the_current_abi_loads(void **state)
{
	struct opened o = {0};
	assert_int_equal(open_built(&o, "plain", ""), 0);
	assert_int_equal(o.errs.n, 0);
	/* The core's copy, not the plugin's own symbol. */
	assert_ptr_not_equal(o.p->v[0].h, dlsym(o.p->v[0].handle, SESAME_PLUGIN_SYMBOL));
	assert_string_equal(o.p->v[0].h->name, "plain");
	close_built(&o);
}

static void test_other_majors_are_refused(void **state)
{
	assert_refused("-DABI_MAJOR=2 -DABI_MINOR=0",
		       "it was built for sesame plugin ABI 2.0; this sesamed is ABI 1.2 and loads "
		       "plugins built for 1.x: it needs a newer sesamed, or a build against this "
		       "sesamed's <sesame/plugin.h>");
	assert_refused(
	    "-DABI_MAJOR=0 -DABI_MINOR=4",
	    "it was built for sesame plugin ABI 0.4; this sesamed is ABI 1.2 and loads "
	    "plugins built for 1.x: rebuild it against this sesamed's <sesame/plugin.h>");
}

static void test_truncated_and_incomplete_descriptors_are_refused(void **state)
{
	char want[256];
	snprintf(want, sizeof(want),
		 "its hasher descriptor is truncated (it says %zu bytes, exports %zu; %zu needed "
		 "for ABI 1.2)",
		 sizeof(struct sesame_hasher), sizeof(struct sesame_plugin_header),
		 sizeof(struct sesame_hasher));
	assert_refused("-DTRUNCATED", want);
	snprintf(want, sizeof(want),
		 "its hasher descriptor is truncated (it says %zu bytes, exports %zu; %zu needed "
		 "for ABI 1.2)",
		 sizeof(struct sesame_hasher) - sizeof(void *), sizeof(struct sesame_hasher),
		 sizeof(struct sesame_hasher));
	assert_refused("-DSHORT", want);
	assert_refused("-DNO_VERIFY", "its hasher descriptor lacks verify, required since ABI 1.0");
	assert_refused("-DWRONG_MAGIC",
		       "it is not a sesame plugin (magic 0x12345678, not 0x5345534d)");
	assert_refused("-DWRONG_NAME", "it is named 'another', but its file is bad.so");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sizes_per_minor),
	    cmocka_unit_test(test_an_older_minor_is_read_to_its_size_only),
	    cmocka_unit_test(test_a_storage_plugin_of_abi_1_0_loads),
	    cmocka_unit_test(test_a_member_is_required_from_its_minor_on),
	    cmocka_unit_test(test_a_minor_1_descriptor_of_minor_0_size_is_truncated),
	    cmocka_unit_test(test_a_newer_minor_loads_its_tail_ignored),
	    cmocka_unit_test(test_the_current_abi_loads),
	    cmocka_unit_test(test_other_majors_are_refused),
	    cmocka_unit_test(test_truncated_and_incomplete_descriptors_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
