/*
 * main.c: sesamed's command line. It loads and checks the configuration and the route scripts
 * before anything starts; -t stops there and reports. Everything else is the master's.
 */
#include "autoconfig.h"

#include <curl/curl.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "clock.h"
#include "config.h"
#include "config_keys.h"
#include "cycle.h"
#include "log.h"
#include "master.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: sesamed [-c FILE] [-t] [-f] [-w N] [-V] [-h] [--config-keys]\n"
		"\n"
		"The sesame authentication daemon.\n"
		"\n"
		"  -c FILE  configuration file (default: %s)\n"
		"  -t       check the configuration and the route scripts, then exit\n"
		"  -f       stay in the foreground (as under systemd)\n"
		"  -w N     run N workers, whatever server.workers says\n"
		"  -V       print the version and exit\n"
		"  -h       print this help and exit\n"
		"  --config-keys  load the configuration as -t does, then print every key its\n"
		"           readers know (key, type, range, default) and exit\n"
		"\n"
		"Signals: TERM or INT stop gracefully, HUP reloads the configuration.\n",
		CONFIG_DEFAULT_PATH);
}

/* Every connection is a descriptor: take all the soft limit the hard one allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void print_errors(const struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		fprintf(stderr, "%s\n", errs->msg[i]);
}

int main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	bool check = false;
	struct master_opts opts = {0};
	static const struct option longopts[] = {{"config-keys", no_argument, NULL, 'K'},
						 {NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "c:tfw:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'K':
			config_keys_record(true);
			check = true;
			break;
		case 'c':
			path = optarg;
			break;
		case 't':
			check = true;
			break;
		case 'f':
			opts.foreground = true;
			break;
		case 'w': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > CONFIG_MAX_WORKERS) {
				fprintf(stderr,
					"sesamed: -w takes a number of workers from 1 to %d\n",
					CONFIG_MAX_WORKERS);
				return 2;
			}
			opts.workers = (int)n;
			break;
		}
		case 'V':
			printf("sesamed %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}

	clock_init();
	log_init(false);
	raise_fd_limit();
	if (sodium_init() < 0) {
		fprintf(stderr, "sesamed: cannot initialise libsodium\n");
		return 1;
	}
	/* Once, in the master before any thread or fork: the workers' transfers inherit it. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "sesamed: cannot initialise libcurl\n");
		return 1;
	}
	if (check && !config_keys_recording())
		return cycle_check(path, opts.workers);
	struct config_errors errs = {0};
	struct config *cfg = cycle_load(path, opts.workers, &errs);
	if (cfg == NULL) {
		print_errors(&errs);
		fprintf(stderr, "sesamed: %s: configuration has errors\n", path);
		config_errors_free(&errs);
		config_keys_free();
		return 1;
	}
	config_errors_free(&errs);
	if (config_keys_recording()) {
		config_keys_print(stdout);
		config_keys_free();
		config_free(cfg);
		return 0;
	}
	if (cycle_migrate(cfg, &errs) != 0) {
		fprintf(stderr, "sesamed: %s\n", errs.n > 0 ? errs.msg[0] : "out of memory");
		config_errors_free(&errs);
		config_free(cfg);
		return 1;
	}
	log_set_level(cfg->log_level);
	return master_run(cfg, &opts);
}
