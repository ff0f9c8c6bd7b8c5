/* router.h: the table of routes and the matching of a request to one. */
#ifndef SESAME_ROUTER_H
#define SESAME_ROUTER_H

#include <stddef.h>

#define ROUTER_MAX_PARAMS 8

struct route {
	char *method;  /* "GET", "POST", ... */
	char *pattern; /* "/users/:id" */
	char *name;    /* "GET /users/:id", for logs */
	int handler;   /* the Lua registry reference of the handler */
	int options;   /* the caller's, kept with the route (auth.h: an enum auth_mode) */
	int metric;    /* the pattern's route label in the metrics segment (metrics_route) */
};

struct route_params {
	size_t n;
	struct {
		const char *name;  /* points into the pattern: ends at the next '/' or the end */
		const char *value; /* points into the matched path, not NUL-terminated */
		size_t len;
	} p[ROUTER_MAX_PARAMS];
};

enum router_result { ROUTER_FOUND, ROUTER_NO_PATH, ROUTER_NO_METHOD };

struct router;

struct router *router_new(void);
void router_free(struct router *r);

/* Adds a route; -1 with a message in err for a bad method or pattern, or a duplicate. */
int router_add(struct router *r, const char *method, const char *pattern, int handler, int options,
	       char *err, size_t errlen);

/*
 * Finds the route for method and path. HEAD falls back to GET. On ROUTER_NO_METHOD, allow
 * holds the methods the path does answer, as the Allow header lists them.
 */
enum router_result router_match(const struct router *r, const char *method, const char *path,
				const struct route **out, struct route_params *params, char *allow,
				size_t allowlen);

size_t router_count(const struct router *r);
const struct route *router_at(const struct router *r, size_t i);

#endif
