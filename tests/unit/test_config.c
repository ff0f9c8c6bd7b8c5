/*
 * test_config.c: unit tests of config.c, the loading and checking of the Lua configuration.
 *
 * Each test writes its configuration into a fresh mkdtemp() folder, loads it with
 * config_load and checks either every value read or every "FILE:LINE: message" reported;
 * the folder is removed afterwards. config_find_line is also tested on its own, on source
 * strings, since the line numbers of every error message depend on it.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct tmp {
	char dir[64];	     /* as mkdtemp made it */
	char real[PATH_MAX]; /* its realpath: config.dir is resolved */
	char path[PATH_MAX]; /* the configuration file */
	struct config_errors errs;
};

/* A bad configuration and the error it must give. */
struct bad_case {
	const char *src;
	int line;
	const char *needle;
};

static int setup(void **state)
{
	struct tmp *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	/* /tmp, not $TMPDIR: Lua shortens chunk names over 59 bytes in its own messages. */
	snprintf(t->dir, sizeof(t->dir), "/tmp/sesame-test-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	assert_non_null(realpath(t->dir, t->real));
	snprintf(t->path, sizeof(t->path), "%s/sesame.lua", t->dir);
	*state = t;
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	struct tmp *t = *state;
	int rc = nftw(t->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	config_errors_free(&t->errs);
	free(t);
	return rc;
}

static void write_file(const struct tmp *t, const char *name, const char *text)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", t->dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void make_dir(const struct tmp *t, const char *name)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", t->dir, name);
	assert_int_equal(mkdir(path, 0700), 0);
}

/* Writes src as the configuration and loads it, forgetting the errors of earlier loads. */
static struct config *load(struct tmp *t, const char *src)
{
	config_errors_free(&t->errs);
	write_file(t, "sesame.lua", src);
	return config_load(t->path, &t->errs);
}

static struct config *load_ok(struct tmp *t, const char *src)
{
	struct config *cfg = load(t, src);
	for (size_t i = 0; i < t->errs.n; i++)
		print_error("unexpected: %s\n", t->errs.msg[i]);
	assert_non_null(cfg);
	assert_int_equal(t->errs.n, 0);
	return cfg;
}

/* Does msg start with "PATH:LINE: " and contain needle? */
static int error_is(const struct tmp *t, const char *msg, int line, const char *needle)
{
	char prefix[PATH_MAX + 32];
	snprintf(prefix, sizeof(prefix), "%s:%d: ", t->path, line);
	return strncmp(msg, prefix, strlen(prefix)) == 0 && strstr(msg, needle) != NULL;
}

static void assert_has_error(const struct tmp *t, int line, const char *needle)
{
	for (size_t i = 0; i < t->errs.n; i++) {
		if (error_is(t, t->errs.msg[i], line, needle))
			return;
	}
	for (size_t i = 0; i < t->errs.n; i++)
		print_error("got: %s\n", t->errs.msg[i]);
	fail_msg("no error \"%s:%d: ...%s...\"", t->path, line, needle);
}

/* Loads each case on its own: it must fail with exactly that one error. */
static void check_bad_cases(struct tmp *t, const struct bad_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct config *cfg = load(t, cases[i].src);
		if (cfg != NULL)
			fail_msg("loaded without error:\n%s", cases[i].src);
		assert_has_error(t, cases[i].line, cases[i].needle);
		if (t->errs.n != 1)
			fail_msg("%zu errors, not 1, for:\n%s", t->errs.n, cases[i].src);
	}
}

static void test_every_key_read(void **state)
{
	struct tmp *t = *state;
	make_dir(t, "routes");
	write_file(t, "routes/a.lua", "-- a\n");
	write_file(t, "routes/b.lua", "-- b\n");
	make_dir(t, "logs");
	struct config *cfg = load_ok(t, "-- every server key, with the standard library at hand\n"
					"server = {\n"
					"\tlisten = { \"127.0.0.1:8081\", \"[::1]:8082\" },\n"
					"\tworkers = 3,\n"
					"\tthreads = math.max(2, 5),\n"
					"\tmax_body = 1024 * 1024,\n"
					"\tmax_header = 8192,\n"
					"\ttimeout = 12,\n"
					"\tkeepalive = 7,\n"
					"\tshutdown_timeout = 45,\n"
					"\tdebug = true,\n"
					"\taccess_log = \"logs/access.log\",\n"
					"\tlog_level = \"debug\",\n"
					"\thandler_instructions = 123456,\n"
					"\tlua_memory = 32 * 1024 * 1024,\n"
					"\tjson_depth = 16,\n"
					"}\n"
					"routes = { \"routes/b.lua\", \"routes/*.lua\" }\n");
	char want[PATH_MAX + 64];

	assert_string_equal(cfg->path, t->path);
	assert_string_equal(cfg->dir, t->real);
	assert_int_equal(cfg->nlisten, 2);
	assert_string_equal(cfg->listen[0], "127.0.0.1:8081");
	assert_string_equal(cfg->listen[1], "[::1]:8082");
	assert_int_equal(cfg->workers, 3);
	assert_int_equal(cfg->threads, 5);
	assert_int_equal(cfg->max_body, 1048576);
	assert_int_equal(cfg->max_header, 8192);
	assert_int_equal(cfg->timeout, 12);
	assert_int_equal(cfg->keepalive, 7);
	assert_int_equal(cfg->shutdown_timeout, 45);
	assert_true(cfg->debug);
	snprintf(want, sizeof(want), "%s/logs/access.log", t->real);
	assert_string_equal(cfg->access_log, want);
	assert_int_equal(cfg->log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(cfg->handler_instructions, 123456);
	assert_int_equal(cfg->lua_memory, 32u << 20);
	assert_int_equal(cfg->json_depth, 16);

	/* In the order listed, each file once, though the glob matches b.lua again. */
	assert_int_equal(cfg->nroutes, 2);
	snprintf(want, sizeof(want), "%s/routes/b.lua", t->real);
	assert_string_equal(cfg->routes[0], want);
	snprintf(want, sizeof(want), "%s/routes/a.lua", t->real);
	assert_string_equal(cfg->routes[1], want);
	config_free(cfg);
}

static void test_workers_auto_and_listen_string(void **state)
{
	struct tmp *t = *state;
	struct config *cfg = load_ok(t, "server = {\n"
					"\tlisten = \"*:9000\",\n"
					"\tworkers = \"auto\",\n"
					"}\n"
					"routes = {}\n");
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	assert_int_equal(cfg->nlisten, 1);
	assert_string_equal(cfg->listen[0], "*:9000");
	assert_true(cfg->workers >= 1);
	assert_int_equal(cfg->workers, cores < 1 ? 1 : cores > 128 ? 128 : cores);
	assert_int_equal(cfg->nroutes, 0);

	config_set_workers(cfg, 0);
	assert_int_equal(cfg->workers, 1);
	config_set_workers(cfg, 1000);
	assert_int_equal(cfg->workers, 128);
	config_free(cfg);
}

static void test_access_log_forms(void **state)
{
	struct tmp *t = *state;
	struct config *cfg = load_ok(t, "server = { access_log = false }\nroutes = {}\n");
	assert_null(cfg->access_log);
	config_free(cfg);

	cfg = load_ok(t, "server = { access_log = \"stderr\" }\nroutes = {}\n");
	assert_string_equal(cfg->access_log, "stderr");
	config_free(cfg);

	/* An absolute path is kept as it is; the file is created when it does not exist. */
	char src[PATH_MAX + 128], want[PATH_MAX + 32];
	snprintf(want, sizeof(want), "%s/absolute.log", t->real);
	snprintf(src, sizeof(src), "server = { access_log = \"%s\" }\nroutes = {}\n", want);
	cfg = load_ok(t, src);
	assert_string_equal(cfg->access_log, want);
	assert_int_equal(access(want, W_OK), 0);
	config_free(cfg);

	/* One that cannot be opened is reported with its line. */
	const struct bad_case bad[] = {
	    {"routes = {}\nserver = {\n\taccess_log = \"/nonexistent-dir/a.log\",\n}\n", 3,
	     "server.access_log: cannot open /nonexistent-dir/a.log"},
	};
	check_bad_cases(t, bad, 1);
}

static void test_defaults_without_server(void **state)
{
	struct tmp *t = *state;
	struct config *cfg = load_ok(t, "-- nothing set: every default applies\n");
	assert_int_equal(cfg->nlisten, 1);
	assert_string_equal(cfg->listen[0], "127.0.0.1:8080");
	assert_true(cfg->workers >= 1);
	assert_int_equal(cfg->threads, 2);
	assert_int_equal(cfg->max_body, 65536);
	assert_int_equal(cfg->max_header, 16384);
	assert_int_equal(cfg->timeout, 30);
	assert_int_equal(cfg->keepalive, 15);
	assert_int_equal(cfg->shutdown_timeout, 30);
	assert_false(cfg->debug);
	assert_string_equal(cfg->access_log, "stderr");
	assert_int_equal(cfg->log_level, LOG_LEVEL_INFO);
	assert_int_equal(cfg->handler_instructions, 50000000);
	assert_int_equal(cfg->lua_memory, 256u << 20);
	assert_int_equal(cfg->json_depth, 32);
	/* The default route glob matches nothing here: a warning, not an error. */
	assert_int_equal(cfg->nroutes, 0);
	config_free(cfg);
}

static void test_default_routes_glob(void **state)
{
	struct tmp *t = *state;
	make_dir(t, "routes");
	write_file(t, "routes/users.lua", "-- users\n");
	write_file(t, "routes/auth.lua", "-- auth\n");
	write_file(t, "routes/notes.txt", "not a route\n");
	struct config *cfg = load_ok(t, "server = {}\n");
	char want[PATH_MAX + 64];
	assert_int_equal(cfg->nroutes, 2);
	snprintf(want, sizeof(want), "%s/routes/auth.lua", t->real);
	assert_string_equal(cfg->routes[0], want);
	snprintf(want, sizeof(want), "%s/routes/users.lua", t->real);
	assert_string_equal(cfg->routes[1], want);
	config_free(cfg);
}

static void test_unknown_top_key(void **state)
{
	static const struct bad_case cases[] = {
	    {"-- a database section sesame does not have\n"
	     "server = { listen = \"127.0.0.1:8080\" }\n"
	     "database = { host = \"db\" }\n",
	     3, "database: unknown key"},
	    {"sever = {\n\tworkers = 2,\n}\n", 1, "sever: unknown key (did you mean 'server'?)"},
	};
	struct tmp *t = *state;
	check_bad_cases(t, cases, 1);
	/* A name far from every known key gets no suggestion. */
	assert_null(strstr(t->errs.msg[0], "did you mean"));
	check_bad_cases(t, cases + 1, 1);
}

static void test_unknown_server_key(void **state)
{
	static const struct bad_case cases[] = {
	    {"server = {\n\tlisten = \"127.0.0.1:8080\",\n\tworkrs = 4,\n}\n", 3,
	     "server.workrs: unknown key (did you mean 'workers'?)"},
	    {"server = {\n\tmax_bdy = 10,\n}\n", 2, "did you mean 'max_body'?"},
	    {"server = {}\nserver.keep_alive = 5\n", 2, "did you mean 'keepalive'?"},
	};
	check_bad_cases(*state, cases, sizeof(cases) / sizeof(cases[0]));

	struct tmp *t = *state;
	assert_null(load(t, "server = {\n\tthreads = 2,\n\tcolour = \"blue\",\n}\n"));
	assert_has_error(t, 3, "server.colour: unknown key");
	assert_null(strstr(t->errs.msg[0], "did you mean"));
}

static void test_wrong_types(void **state)
{
	static const struct bad_case cases[] = {
	    {"server = {\n\tthreads = \"4\",\n}\n", 2,
	     "server.threads: expected a whole number, found string"},
	    {"server = {\n\n\ttimeout = 2.5,\n}\n", 3,
	     "server.timeout: expected a whole number, found number"},
	    {"server = {\n\tdebug = \"yes\",\n}\n", 2,
	     "server.debug: expected true or false, found string"},
	    {"server = {\n\tworkers = \"many\",\n}\n", 2, "server.workers: expected \"auto\""},
	    {"server = {\n\tlog_level = 3,\n}\n", 2, "server.log_level: expected \"error\""},
	    {"server = {\n\taccess_log = true,\n}\n", 2, "server.access_log: expected \"stderr\""},
	    {"server = {\n\tlisten = { \"127.0.0.1:80\", 81 },\n}\n", 2,
	     "server.listen: item 2: expected a string, found number"},
	    {"-- not a table\nserver = \"big\"\n", 2, "server: expected a table, found string"},
	    {"routes = {\n\t\"a.lua\",\n\tmain = \"b.lua\",\n}\n", 1,
	     "routes: expected a list of strings"},
	    {"server = {\n\t[1] = \"x\",\n}\n", 1,
	     "server: keys must be names, found a number key"},
	};
	check_bad_cases(*state, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_out_of_range(void **state)
{
	static const struct bad_case cases[] = {
	    {"server = {\n\tthreads = 0,\n}\n", 2, "server.threads: 0 is out of range (1 to 64)"},
	    {"server = {\n\tthreads = 65,\n}\n", 2, "server.threads: 65 is out of range"},
	    {"server = {\n\tmax_body = -1,\n}\n", 2, "server.max_body: -1 is out of range"},
	    {"server = {\n\tmax_header = 100,\n}\n", 2, "server.max_header: 100 is out of range"},
	    {"server = {\n\ttimeout = 0,\n}\n", 2, "server.timeout: 0 is out of range"},
	    {"server = {\n\tkeepalive = 3601,\n}\n", 2, "server.keepalive: 3601 is out of range"},
	    {"server = {\n\tshutdown_timeout = 0,\n}\n", 2, "server.shutdown_timeout: 0 is out"},
	    {"server = {\n\thandler_instructions = 5,\n}\n", 2,
	     "server.handler_instructions: 5 is out of range"},
	    {"server = {\n\tlua_memory = 1024,\n}\n", 2, "server.lua_memory: 1024 is out of range"},
	    {"server = {\n\tjson_depth = 1001,\n}\n", 2, "server.json_depth: 1001 is out of range"},
	    {"server = {\n\tworkers = 0,\n}\n", 2, "server.workers: expected \"auto\" or a number"},
	    {"server = {\n\tworkers = 129,\n}\n", 2,
	     "server.workers: expected \"auto\" or a number"},
	    {"server = {\n\tlog_level = \"verbose\",\n}\n", 2, "server.log_level: expected"},
	};
	check_bad_cases(*state, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_bad_listen(void **state)
{
	static const struct bad_case cases[] = {
	    {"server = {\n\tthreads = 2,\n\tlisten = { \"127.0.0.1:8080\", \"nowhere:80\" },\n}\n",
	     3, "server.listen: 'nowhere:80' is not a listen address"},
	    {"server = {\n\tlisten = \"127.0.0.1\",\n}\n", 2,
	     "'127.0.0.1' is not a listen address"},
	    {"server = {\n\tlisten = {},\n}\n", 2, "server.listen: at least one address is needed"},
	};
	check_bad_cases(*state, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_lua_syntax_error(void **state)
{
	struct tmp *t = *state;
	assert_null(load(t, "server = {\n\tworkers = 4\n\tthreads = 2\n}\n"));
	assert_int_equal(t->errs.n, 1);
	assert_has_error(t, 3, "'}' expected");
}

static void test_lua_runtime_error(void **state)
{
	static const struct bad_case cases[] = {
	    {"server = {}\nerror(\"no database configured\")\n", 2, "no database configured"},
	    {"server = {\n\tworkers = 2,\n\tthreads = nil + 1,\n}\n", 3,
	     "attempt to perform arithmetic"},
	    {"server = {}\n_ENV[1] = true\n", 2, "settings are named: cannot set a number key"},
	};
	check_bad_cases(*state, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_missing_route_file(void **state)
{
	struct tmp *t = *state;
	char needle[PATH_MAX + 64];
	assert_null(load(t, "server = { threads = 2 }\n"
			    "-- one literal file, missing\n"
			    "routes = { \"routes/missing.lua\" }\n"));
	assert_int_equal(t->errs.n, 1);
	snprintf(needle, sizeof(needle), "routes: %s/routes/missing.lua: no such file", t->real);
	assert_has_error(t, 3, needle);

	/* A glob that matches nothing only warns. */
	struct config *cfg = load_ok(t, "routes = { \"routes/*.lua\" }\n");
	assert_int_equal(cfg->nroutes, 0);
	config_free(cfg);
}

static void test_unreadable_file(void **state)
{
	struct tmp *t = *state;
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/absent.lua", t->dir);
	assert_null(config_load(path, &t->errs));
	assert_int_equal(t->errs.n, 1);
	assert_non_null(strstr(t->errs.msg[0], "absent.lua: cannot read"));
}

static void test_every_error_reported(void **state)
{
	struct tmp *t = *state;
	char needle[PATH_MAX + 64];
	assert_null(load(t, "server = {\n"
			    "\tthreads = \"two\",\n"
			    "\ttimeout = 0,\n"
			    "\tcolour = \"blue\",\n"
			    "}\n"
			    "routes = { \"routes/missing.lua\" }\n"
			    "extra = 1\n"
			    "server.json_depth = 0\n"));
	assert_int_equal(t->errs.n, 6);
	assert_has_error(t, 2, "server.threads: expected a whole number");
	assert_has_error(t, 3, "server.timeout: 0 is out of range");
	assert_has_error(t, 4, "server.colour: unknown key");
	snprintf(needle, sizeof(needle), "%s/routes/missing.lua: no such file", t->real);
	assert_has_error(t, 6, needle);
	assert_has_error(t, 7, "extra: unknown key");
	assert_has_error(t, 8, "server.json_depth: 0 is out of range");
}

static void test_find_line_nested(void **state)
{
	const char *src = "-- sesame\n"
			  "server = {\n"
			  "\tlisten = {\n"
			  "\t\t\"127.0.0.1:8080\",\n"
			  "\t},\n"
			  "\tworkers = 4,\n"
			  "}\n"
			  "routes = { \"routes/*.lua\" }\n";
	assert_int_equal(config_find_line(src, "server"), 2);
	assert_int_equal(config_find_line(src, "server.listen"), 3);
	assert_int_equal(config_find_line(src, "server.workers"), 6);
	assert_int_equal(config_find_line(src, "routes"), 8);
}

static void test_find_line_same_line(void **state)
{
	const char *src = "\nserver = { workers = 4, threads = 2 }\n";
	assert_int_equal(config_find_line(src, "server"), 2);
	assert_int_equal(config_find_line(src, "server.workers"), 2);
	assert_int_equal(config_find_line(src, "server.threads"), 2);
}

static void test_find_line_comments(void **state)
{
	const char *src = "-- server = { workers = 1 }\n"
			  "server = {\n"
			  "\t-- workers = 2,\n"
			  "\tthreads = 2, -- workers = 3\n"
			  "\tworkers = 4,\n"
			  "}\n";
	assert_int_equal(config_find_line(src, "server"), 2);
	assert_int_equal(config_find_line(src, "server.workers"), 5);
}

static void test_find_line_block_comments(void **state)
{
	const char *src = "--[[ the old settings, kept for reference\n"
			  "server = {\n"
			  "\tworkers = 8,\n"
			  "}\n"
			  "]]\n"
			  "server = {\n"
			  "\tworkers = 2,\n"
			  "}\n";
	assert_int_equal(config_find_line(src, "server"), 6);
	assert_int_equal(config_find_line(src, "server.workers"), 7);
}

static void test_find_line_dotted(void **state)
{
	const char *src = "server = { listen = \"*:80\" }\n"
			  "\n"
			  "server.workers = 3\n";
	assert_int_equal(config_find_line(src, "server.workers"), 3);
	assert_int_equal(config_find_line(src, "server.listen"), 1);
}

static void test_find_line_whole_names(void **state)
{
	const char *src = "server = {\n"
			  "\tshutdown_timeout = 9,\n"
			  "\t[\"timeout\"] = 5,\n"
			  "}\n";
	assert_int_equal(config_find_line(src, "server.timeout"), 3);
	assert_int_equal(config_find_line(src, "server.shutdown_timeout"), 2);
}

static void test_find_line_not_equality(void **state)
{
	const char *src = "server = {}\n"
			  "if server.workers == nil then\n"
			  "\tserver.threads = 2\n"
			  "end\n"
			  "server.workers = 5\n";
	assert_int_equal(config_find_line(src, "server.workers"), 5);
	assert_int_equal(config_find_line(src, "server.threads"), 3);
}

static void test_find_line_missing(void **state)
{
	const char *src = "server = { workers = 4 }\n";
	assert_int_equal(config_find_line(src, "server.threads"), 0);
	assert_int_equal(config_find_line(src, "routes"), 0);
	assert_int_equal(config_find_line("", "server"), 0);
}

int main(void)
{
	/* The loader warns about empty route globs; the tests check those cases themselves. */
	log_set_level(LOG_LEVEL_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_every_key_read, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_workers_auto_and_listen_string, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_access_log_forms, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_defaults_without_server, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_default_routes_glob, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_top_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_server_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_listen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lua_syntax_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lua_runtime_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_route_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unreadable_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_error_reported, setup, teardown),
	    cmocka_unit_test(test_find_line_nested),
	    cmocka_unit_test(test_find_line_same_line),
	    cmocka_unit_test(test_find_line_comments),
	    cmocka_unit_test(test_find_line_block_comments),
	    cmocka_unit_test(test_find_line_dotted),
	    cmocka_unit_test(test_find_line_whole_names),
	    cmocka_unit_test(test_find_line_not_equality),
	    cmocka_unit_test(test_find_line_missing),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
