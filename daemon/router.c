/*
 * router.c: the route table.
 *
 * Routes are grouped by path pattern; each pattern carries the methods it answers, so that a
 * known path asked with another method gets 405 with an Allow header instead of 404. A literal
 * pattern matches by one string comparison; a pattern with ":name" segments matches segment by
 * segment and captures each parameter as a slice of the request path. A literal pattern wins
 * over parameterised ones; among those, the one whose first differing segment is literal wins
 * ("/users/me" over "/users/:id", whatever the order they were declared in).
 */
#include "autoconfig.h"

#include "router.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

struct path_entry {
	char *pattern;
	bool literal;
	struct route **routes; /* the methods of this path */
	size_t nroutes;
};

struct router {
	struct path_entry *paths;
	size_t npaths;
	struct route **all; /* every route, in the order added */
	size_t nall;
};

static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", NULL};

struct router *router_new(void)
{
	return calloc(1, sizeof(struct router));
}

void router_free(struct router *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nall; i++) {
		free(r->all[i]->method);
		free(r->all[i]->pattern);
		free(r->all[i]->name);
		free(r->all[i]);
	}
	for (size_t i = 0; i < r->npaths; i++) {
		free(r->paths[i].pattern);
		free(r->paths[i].routes);
	}
	free(r->paths);
	free(r->all);
	free(r);
}

static bool pchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("-._~!$&'()*+,;=:@%", c) != NULL;
}

static bool name_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (!first && c >= '0' && c <= '9');
}

/* Checks a pattern; sets *literal when it has no parameter. */
static int check_pattern(const char *pattern, bool *literal, char *err, size_t errlen)
{
	size_t nparams = 0;
	if (pattern[0] != '/') {
		snprintf(err, errlen, "route path '%s' must start with '/'", pattern);
		return -1;
	}
	for (const char *s = pattern + 1; *s != '\0';) {
		size_t len = strcspn(s, "/");
		if (s[0] == ':') {
			bool ok = len > 1 && name_char(s[1], true);
			for (size_t i = 2; i < len && ok; i++)
				ok = name_char(s[i], false);
			if (!ok) {
				snprintf(err, errlen,
					 "route path '%s': a parameter is ':' and a name", pattern);
				return -1;
			}
			nparams++;
		} else {
			for (size_t i = 0; i < len; i++) {
				if (!pchar(s[i])) {
					snprintf(err, errlen,
						 "route path '%s': '%c' is not allowed", pattern,
						 s[i]);
					return -1;
				}
			}
		}
		s += len;
		if (*s == '/')
			s++;
	}
	if (nparams > ROUTER_MAX_PARAMS) {
		snprintf(err, errlen, "route path '%s' has more than %d parameters", pattern,
			 ROUTER_MAX_PARAMS);
		return -1;
	}
	*literal = nparams == 0;
	return 0;
}

static struct path_entry *find_path(struct router *r, const char *pattern)
{
	for (size_t i = 0; i < r->npaths; i++) {
		if (strcmp(r->paths[i].pattern, pattern) == 0)
			return &r->paths[i];
	}
	return NULL;
}

static struct path_entry *add_path(struct router *r, const char *pattern, bool literal)
{
	struct path_entry *grown = realloc(r->paths, (r->npaths + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	r->paths = grown;
	struct path_entry *p = &r->paths[r->npaths];
	*p = (struct path_entry){.pattern = strdup(pattern), .literal = literal};
	if (p->pattern == NULL)
		return NULL;
	r->npaths++;
	return p;
}

int router_add(struct router *r, const char *method, const char *pattern, int handler, int options,
	       char *err, size_t errlen)
{
	bool known = false, literal;
	for (const char *const *m = methods; *m != NULL && !known; m++)
		known = strcmp(*m, method) == 0;
	if (!known) {
		snprintf(err, errlen,
			 "'%s' is not a route method: use GET, POST, PUT, DELETE, PATCH or OPTIONS",
			 method);
		return -1;
	}
	if (check_pattern(pattern, &literal, err, errlen) != 0)
		return -1;
	struct path_entry *p = find_path(r, pattern);
	for (size_t i = 0; p != NULL && i < p->nroutes; i++) {
		if (strcmp(p->routes[i]->method, method) == 0) {
			snprintf(err, errlen, "route %s %s is defined twice", method, pattern);
			return -1;
		}
	}
	if (p == NULL && (p = add_path(r, pattern, literal)) == NULL)
		goto nomem;

	struct route *rt = calloc(1, sizeof(*rt));
	struct route **routes = realloc(p->routes, (p->nroutes + 1) * sizeof(*routes));
	if (routes != NULL)
		p->routes = routes;
	struct route **all = realloc(r->all, (r->nall + 1) * sizeof(*all));
	if (all != NULL)
		r->all = all;
	if (rt == NULL || routes == NULL || all == NULL) {
		free(rt);
		goto nomem;
	}
	size_t namelen = strlen(method) + strlen(pattern) + 2;
	rt->method = strdup(method);
	rt->pattern = strdup(pattern);
	rt->name = malloc(namelen);
	rt->handler = handler;
	rt->options = options;
	rt->metric = metrics_route(pattern);
	if (rt->name != NULL)
		snprintf(rt->name, namelen, "%s %s", method, pattern);
	p->routes[p->nroutes++] = rt;
	r->all[r->nall++] = rt;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

static bool match_params(const char *pattern, const char *path, struct route_params *params)
{
	params->n = 0;
	const char *p = pattern + 1, *s = path + 1;
	if (path[0] != '/')
		return false;
	for (;;) {
		size_t plen = strcspn(p, "/"), slen = strcspn(s, "/");
		if (p[0] == ':') {
			if (slen == 0)
				return false;
			params->p[params->n].name = p + 1;
			params->p[params->n].value = s;
			params->p[params->n].len = slen;
			params->n++;
		} else if (plen != slen || memcmp(p, s, plen) != 0) {
			return false;
		}
		p += plen;
		s += slen;
		if (*p == '\0' || *s == '\0')
			return *p == '\0' && *s == '\0';
		p++;
		s++;
	}
}

/* Is pattern a more specific than b: literal where b has a parameter, at the first difference? */
static bool more_specific(const char *a, const char *b)
{
	for (;;) {
		a += *a == '/';
		b += *b == '/';
		if (*a == '\0' || *b == '\0')
			return false;
		if ((*a == ':') != (*b == ':'))
			return *b == ':';
		a += strcspn(a, "/");
		b += strcspn(b, "/");
	}
}

static const struct path_entry *match_path(const struct router *r, const char *path,
					   struct route_params *params)
{
	const struct path_entry *best = NULL;
	struct route_params found;
	for (size_t i = 0; i < r->npaths; i++) {
		if (r->paths[i].literal && strcmp(r->paths[i].pattern, path) == 0) {
			params->n = 0;
			return &r->paths[i];
		}
	}
	for (size_t i = 0; i < r->npaths; i++) {
		const struct path_entry *p = &r->paths[i];
		if (p->literal || (best != NULL && !more_specific(p->pattern, best->pattern)))
			continue;
		if (match_params(p->pattern, path, &found)) {
			best = p;
			*params = found;
		}
	}
	return best;
}

static const struct route *method_route(const struct path_entry *p, const char *method)
{
	for (size_t i = 0; i < p->nroutes; i++) {
		if (strcmp(p->routes[i]->method, method) == 0)
			return p->routes[i];
	}
	return NULL;
}

static void list_allowed(const struct path_entry *p, char *allow, size_t allowlen)
{
	size_t n = 0;
	allow[0] = '\0';
	for (size_t i = 0; i < p->nroutes; i++) {
		const char *m = p->routes[i]->method;
		bool get = strcmp(m, "GET") == 0;
		n += (size_t)snprintf(allow + n, n < allowlen ? allowlen - n : 0, "%s%s%s",
				      n ? ", " : "", m, get ? ", HEAD" : "");
		if (n >= allowlen)
			break;
	}
}

enum router_result router_match(const struct router *r, const char *method, const char *path,
				const struct route **out, struct route_params *params, char *allow,
				size_t allowlen)
{
	const struct path_entry *p = match_path(r, path, params);
	if (p == NULL)
		return ROUTER_NO_PATH;
	const struct route *rt = method_route(p, method);
	if (rt == NULL && strcmp(method, "HEAD") == 0)
		rt = method_route(p, "GET");
	if (rt == NULL) {
		list_allowed(p, allow, allowlen);
		return ROUTER_NO_METHOD;
	}
	*out = rt;
	return ROUTER_FOUND;
}

size_t router_count(const struct router *r)
{
	return r->nall;
}

const struct route *router_at(const struct router *r, size_t i)
{
	return i < r->nall ? r->all[i] : NULL;
}
