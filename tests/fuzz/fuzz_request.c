/*
 * fuzz_request.c: the request path, from the request evhttp hands over to the answer: the
 * built-in answers and the router (http.c, router.c), the token check of a route that asks
 * for one, from the Authorization header or the cookies with the CSRF header (auth.c,
 * tokens.c), and the request object a handler reads (lua_request.c: headers, query, cookies,
 * path parameters, req:json() with json.c), then the answer's JSON.
 *
 * The input is a request as a client writes it: "METHOD URI" on the first line, header lines
 * "Name: value" up to an empty line, then the body. The target builds an evhttp request from
 * it with libevent's own functions, as evhttp does once it has parsed one off a connection,
 * and serves it with the default application (etc/sesame/routes, HS256 tokens in cookies
 * too, no storage: a route that needs storage answers 500) and tests/fuzz/routes/echo.lua.
 * Without a connection, evhttp frees the request once it is answered.
 */
#include "autoconfig.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http.h"
#include "log.h"
#include "lua_api.h"

static struct event_base *base;
static struct luaapi *api;
static struct http_server *srv;
static struct config *cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_LEVEL_ERROR);
	cfg = fuzz_config(
	    "request",
	    "server = { access_log = false }\n"
	    "plugins = { path = \"%s\" }\n"
	    "jwt = { secret = \"a secret for the request fuzz target, 48 bytes\",\n"
	    "        cookies = true }\n"
	    "routes = { \"%s/etc/sesame/routes/*.lua\", \"%s/tests/fuzz/routes/*.lua\" }\n",
	    FUZZ_PLUGINDIR, FUZZ_SRCDIR, FUZZ_SRCDIR);
	struct config_errors errs = {0};
	base = event_base_new();
	api = base != NULL ? luaapi_new(cfg, base, NULL, NULL, &errs) : NULL;
	srv = api != NULL
		  ? http_server_new(cfg, base, NULL, 0, luaapi_router(api), luaapi_dispatch, api)
		  : NULL;
	if (srv == NULL) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		abort();
	}
	return 0;
}

static const struct {
	const char *name;
	enum evhttp_cmd_type cmd;
} methods[] = {
    {"GET", EVHTTP_REQ_GET},	 {"POST", EVHTTP_REQ_POST},	{"HEAD", EVHTTP_REQ_HEAD},
    {"PUT", EVHTTP_REQ_PUT},	 {"DELETE", EVHTTP_REQ_DELETE}, {"OPTIONS", EVHTTP_REQ_OPTIONS},
    {"PATCH", EVHTTP_REQ_PATCH},
};

/* The next line of [*p, end), without its CR LF or LF; *p moves past it. */
static char *next_line(const char **p, const char *end)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t len = nl != NULL ? (size_t)(nl - *p) : (size_t)(end - *p);
	char *line = malloc(len + 1);
	if (line == NULL)
		abort();
	memcpy(line, *p, len);
	line[len] = '\0';
	if (len > 0 && line[len - 1] == '\r')
		line[len - 1] = '\0';
	*p = nl != NULL ? nl + 1 : end;
	return line;
}

/* "METHOD URI [VERSION]" into ev, as evhttp's request-line parser leaves it; -1 when evhttp
 * would have refused it. */
static int request_line(struct evhttp_request *ev, char *line)
{
	char *sp = strchr(line, ' ');
	if (sp == NULL)
		return -1;
	*sp = '\0';
	char *uri = sp + 1, *version = strchr(uri, ' ');
	if (version != NULL)
		*version = '\0';
	size_t i = 0;
	while (i < sizeof(methods) / sizeof(methods[0]) && strcmp(methods[i].name, line) != 0)
		i++;
	if (i == sizeof(methods) / sizeof(methods[0]) || uri[0] == '\0')
		return -1;
	ev->kind = EVHTTP_REQUEST;
	ev->type = methods[i].cmd;
	ev->major = 1;
	ev->minor = 1;
	ev->uri = strdup(uri);
	ev->uri_elems = evhttp_uri_parse_with_flags(uri, EVHTTP_URI_NONCONFORMANT);
	return ev->uri != NULL && ev->uri_elems != NULL ? 0 : -1;
}

/* "Name: value" into the input headers; a line evhttp would refuse is left out. */
static void header_line(struct evhttp_request *ev, char *line)
{
	char *colon = strchr(line, ':');
	if (colon == NULL || colon == line)
		return;
	*colon = '\0';
	char *value = colon + 1;
	value += strspn(value, " \t");
	evhttp_add_header(evhttp_request_get_input_headers(ev), line, value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct evhttp_request *ev = evhttp_request_new(NULL, NULL);
	if (ev == NULL)
		abort();
	char *line = next_line(&p, end);
	int rc = request_line(ev, line);
	free(line);
	if (rc != 0) {
		evhttp_request_free(ev);
		return 0;
	}
	while (p < end) {
		line = next_line(&p, end);
		bool blank = line[0] == '\0';
		if (!blank)
			header_line(ev, line);
		free(line);
		if (blank)
			break;
	}
	evbuffer_add(evhttp_request_get_input_buffer(ev), p, (size_t)(end - p));
	/* Answered at once (no handler here waits on a job thread), and then freed by evhttp. */
	http_server_handle(srv, ev);
	return 0;
}
