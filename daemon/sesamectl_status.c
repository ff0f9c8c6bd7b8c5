/*
 * sesamectl_status.c: sesamectl status, the running master's state as it tells it on its
 * control socket (server.control): its pid, uptime, configuration file and generation, and
 * each worker's pid, slot, generation and state. The master writes one JSON line per
 * connection; --json prints it as it came, otherwise it becomes a table.
 */
#include "autoconfig.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "sesamectl.h"

/* The answer is a few kilobytes at most: 4 per worker record is ample. */
#define ANSWER_MAX (1 << 20)

/* The master's line on the socket at path; NULL with the reason in errno. */
static json_t *ask_master(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 5};
	static char buf[ANSWER_MAX];
	size_t len = 0;
	ssize_t n = 0;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	memcpy(sa.sun_path, path, strlen(path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		goto fail;
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	if (n < 0)
		goto fail;
	close(fd);
	json_t *doc = json_loadb(buf, len, 0, NULL);
	if (doc == NULL)
		errno = EPROTO;
	return doc;
fail:
	if (fd >= 0) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return NULL;
}

static void print_status(const json_t *doc)
{
	size_t i;
	json_t *w;
	double up = json_number_value(json_object_get(doc, "uptime"));
	printf("master:     pid %lld, up %.0f s (%s)\n"
	       "config:     %s\n"
	       "generation: %lld\n"
	       "workers:    %zu running, %lld wanted\n\n",
	       (long long)json_integer_value(json_object_get(doc, "pid")), up,
	       json_string_value(json_object_get(doc, "version")),
	       json_string_value(json_object_get(doc, "config")),
	       (long long)json_integer_value(json_object_get(doc, "generation")),
	       json_array_size(json_object_get(doc, "workers")),
	       (long long)json_integer_value(json_object_get(doc, "workers_wanted")));
	printf("%-8s %-5s %-10s %s\n", "PID", "SLOT", "GENERATION", "STATE");
	json_array_foreach (json_object_get(doc, "workers"), i, w) {
		printf("%-8lld %-5lld %-10lld %s\n",
		       (long long)json_integer_value(json_object_get(w, "pid")),
		       (long long)json_integer_value(json_object_get(w, "slot")),
		       (long long)json_integer_value(json_object_get(w, "generation")),
		       json_string_value(json_object_get(w, "state")));
	}
}

int ctl_status(const char *path, int argc, char **argv)
{
	bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
	if (argc > 2 || (argc == 2 && !json)) {
		fprintf(stderr, "Usage: sesamectl [-c FILE] status [--json]\n");
		return CTL_USAGE;
	}
	struct config *cfg = ctl_load(path);
	if (cfg == NULL)
		return CTL_FAILED;
	if (cfg->control == NULL) {
		fprintf(stderr,
			"sesamectl: server.control is false in %s: the master has no "
			"control socket to ask\n",
			path);
		config_free(cfg);
		return CTL_FAILED;
	}
	json_t *doc = ask_master(cfg->control);
	if (doc == NULL) {
		fprintf(stderr,
			"sesamectl: cannot reach the master on %s: %s\n"
			"Is sesamed running with this configuration (%s)? Its log says why when it "
			"could not listen there; server.control names the socket.\n",
			cfg->control, strerror(errno), path);
		config_free(cfg);
		return CTL_FAILED;
	}
	if (json) {
		char *text = json_dumps(doc, JSON_COMPACT);
		if (text != NULL)
			printf("%s\n", text);
		free(text);
	} else {
		print_status(doc);
	}
	json_decref(doc);
	config_free(cfg);
	return CTL_OK;
}
