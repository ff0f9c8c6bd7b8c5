/*
 * sesamectl_status.c: sesamectl status, the running master's state as it tells it on its
 * control socket (server.control): its pid, uptime, configuration file and generation, and
 * each worker's pid, slot, generation and state. The master writes one JSON line per
 * connection; --json prints it as it came, otherwise it becomes a table. The socket is
 * --socket PATH, or server.control read alone from the configuration: no plugin is loaded and
 * no storage reached, so that status answers whatever state those are in.
 */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
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

/* server.control of the configuration at path, read alone; NULL with the reason said. */
static char *control_path(const char *path)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load_control(path, &errs);
	char *control = NULL;
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	config_errors_free(&errs);
	if (cfg != NULL && cfg->control == NULL)
		fprintf(stderr,
			"sesamectl: server.control is false in %s: the master has no "
			"control socket to ask\n",
			path);
	else if (cfg != NULL && (control = strdup(cfg->control)) == NULL)
		fprintf(stderr, "sesamectl: out of memory\n");
	config_free(cfg);
	return control;
}

static int status_usage(void)
{
	fprintf(stderr, "Usage: sesamectl [-c FILE] status [--json] [--socket PATH]\n");
	return CTL_USAGE;
}

int ctl_status(const char *path, int argc, char **argv)
{
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
						 {"socket", required_argument, NULL, 's'},
						 {NULL, 0, NULL, 0}};
	const char *socket_path = NULL;
	bool json = false;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "js:", longopts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 's' && optarg[0] != '\0')
			socket_path = optarg;
		else
			return status_usage();
	}
	if (optind != argc)
		return status_usage();
	char *control = socket_path != NULL ? strdup(socket_path) : control_path(path);
	if (control == NULL)
		return CTL_FAILED;
	json_t *doc = ask_master(control);
	if (doc == NULL) {
		fprintf(stderr,
			"sesamectl: cannot reach the master on %s: %s\n"
			"Is sesamed running with this configuration (%s)? Its log says why when it "
			"could not listen there; server.control names the socket.\n",
			control, strerror(errno), path);
		free(control);
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
	free(control);
	return CTL_OK;
}
