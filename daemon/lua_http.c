/*
 * lua_http.c: sesame.http.request{method, url, headers, json | body, timeout}.
 *
 * A route script reaches only the hosts the operator allowed (http.allow): the URL is parsed
 * once, by curl's own parser (CURLU), and that parsed handle is what curl connects to, so the
 * check and the connection cannot read the URL differently. The scheme must be http or https,
 * a user name in the URL is refused, and its host (compared exactly, ignoring case) and port
 * must be an entry of the list; redirects are not followed and no proxy is used, so the
 * transfer goes nowhere else. The request runs as an outbound transfer (outbound.c) while the
 * caller yields, bounded by its timeout; the response body by http.max_response. The answer
 * is status, body, headers (lower-case names), or nil and a message for the script.
 */
#include "autoconfig.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "log.h"
#include "lua_private.h"
#include "outbound.h"

struct http_job {
	struct luaapi_job lj;
	struct outbound_transfer t;
	CURLU *url;
	struct curl_slist *headers;
	char *body; /* the response */
	size_t len, max;
	bool too_large;
	char target[300]; /* host:port, for the log */
	char err[CURL_ERROR_SIZE];
};

/* ---- the allow list ---- */

static bool host_allowed(const struct config_http *cfg, const char *host, long port,
			 long default_port)
{
	for (size_t i = 0; i < cfg->nallow; i++) {
		const struct config_http_host *e = &cfg->allow[i];
		long allowed = e->port != 0 ? e->port : default_port;
		if (strcasecmp(e->host, host) == 0 && allowed == port)
			return true;
	}
	return false;
}

/* Parses url into hj->url; NULL, or why it may not be reached. */
static const char *check_url(struct http_job *hj, const struct config_http *cfg, const char *url)
{
	char *scheme = NULL, *user = NULL, *host = NULL, *port = NULL;
	const char *why = "not an http or https URL";
	hj->url = curl_url();
	if (hj->url == NULL || curl_url_set(hj->url, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(hj->url, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		goto done;
	why = "user names in URLs are refused";
	if (curl_url_get(hj->url, CURLUPART_USER, &user, 0) != CURLUE_NO_USER)
		goto done;
	why = "host not allowed";
	if (curl_url_get(hj->url, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(hj->url, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto done;
	snprintf(hj->target, sizeof(hj->target), "%s:%s", host, port);
	if (host_allowed(cfg, host, strtol(port, NULL, 10),
			 strcmp(scheme, "https") == 0 ? 443 : 80))
		why = NULL;
done:
	curl_free(scheme);
	curl_free(user);
	curl_free(host);
	curl_free(port);
	return why;
}

/* ---- the request ---- */

/*
 * The headers table at idx as one string, each header "\nName: value", pushed; raises on a name
 * or value that could split a header. Checked whole before anything is allocated in C.
 */
static void push_header_lines(lua_State *L, int idx)
{
	lua_pushliteral(L, "");
	if (lua_isnil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	int lines = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		size_t nlen = 0, vlen = 0;
		const char *name =
		    lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nlen) : "";
		const char *value = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
					? lua_tolstring(L, -1, &vlen)
					: NULL;
		if (nlen == 0 || nlen > 64 || strcspn(name, ": \t\r\n") != nlen || value == NULL ||
		    strcspn(value, "\r\n") != vlen)
			luaL_error(L,
				   "sesame.http.request: header %s: a name and a string value, no "
				   "CR, LF or NUL",
				   nlen > 0 && strcspn(name, "\r\n") == nlen ? name
									     : "(not a name)");
		lua_pushvalue(L, lines);
		lua_pushfstring(L, "\n%s: %s", name, value);
		lua_concat(L, 2);
		lua_replace(L, lines);
		lua_pop(L, 1);
	}
}

/* Whether the header lines name a header, in any case. */
static bool has_header(const char *lines, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = strchr(lines, '\n'); p != NULL; p = strchr(p + 1, '\n')) {
		if (strncasecmp(p + 1, name, n) == 0 && p[1 + n] == ':')
			return true;
	}
	return false;
}

/* The body to send (json = table, encoded; body = string), pushed; nil when there is none. */
static void push_body(lua_State *L, bool *json_type)
{
	int json = lua_getfield(L, 1, "json");
	int body = lua_getfield(L, 1, "body");
	*json_type = false;
	if (json != LUA_TNIL && body != LUA_TNIL)
		luaL_error(L, "sesame.http.request: give json or body, not both");
	if (json == LUA_TNIL) {
		if (body != LUA_TNIL && body != LUA_TSTRING)
			luaL_error(L, "sesame.http.request: body must be a string");
		lua_remove(L, -2);
		return;
	}
	lua_pop(L, 1);
	char err[LOG_ERR_MAX];
	json_t *doc = json_from_lua(L, -1, luaapi_get(L)->cfg->json_depth + 16, err, sizeof(err));
	lua_pop(L, 1);
	char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	if (text == NULL)
		luaL_error(L, "sesame.http.request: json: %s", doc == NULL ? err : "out of memory");
	lua_pushstring(L, text); /* a memory error here loses text: the collector cannot help */
	free(text);
	*json_type = true;
}

/* The method: a token of capitals; GET unless a body goes with it, then POST. */
static const char *method_of(lua_State *L, bool has_body)
{
	const char *m = luaapi_string_field(L, 1, "method", false, NULL, "sesame.http.request");
	if (m == NULL)
		m = has_body ? "POST" : "GET";
	if (m[0] == '\0' || strlen(m) > 16 || strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(m))
		luaL_error(L, "sesame.http.request: method must be a method name in capitals");
	return m;
}

/* timeout = seconds, default http.timeout. */
static long timeout_of(lua_State *L, const struct config_http *cfg)
{
	lua_getfield(L, 1, "timeout");
	int isnum = 0;
	lua_Number t = lua_tonumberx(L, -1, &isnum);
	bool unset = lua_isnil(L, -1);
	lua_pop(L, 1);
	if (unset)
		return cfg->timeout_ms;
	if (!isnum || !(t > 0 && t <= 3600))
		luaL_error(L, "sesame.http.request: timeout is a number of seconds (at most 3600)");
	return t * 1000 < 1 ? 1 : (long)(t * 1000);
}

/* ---- the transfer ---- */

static size_t write_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_job *hj = arg;
	size_t n = size * nmemb;
	if (n > hj->max - hj->len) {
		hj->too_large = true;
		return 0; /* curl ends the transfer */
	}
	char *grown = realloc(hj->body, hj->len + n + 1);
	if (grown == NULL)
		return 0;
	hj->body = grown;
	memcpy(hj->body + hj->len, data, n);
	hj->len += n;
	return n;
}

static void http_transfer_done(struct outbound_transfer *t)
{
	struct http_job *hj = (struct http_job *)((char *)t - offsetof(struct http_job, t));
	hj->lj.job.done(&hj->lj.job);
}

/* The request timed out or its client left: the transfer is not wanted any more. */
static void http_cancel(struct luaapi_job *lj)
{
	struct http_job *hj = (struct http_job *)lj;
	log_info("http.request to %s: cancelled", hj->target);
	outbound_cancel(&hj->t);
}

/* The response's headers as a table: lower-case names, repeated ones joined with ", ". */
static void push_response_headers(lua_State *co, CURL *easy)
{
	lua_newtable(co);
	int tbl = lua_gettop(co);
	struct curl_header *prev = NULL, *h;
	while ((h = curl_easy_nextheader(easy, CURLH_HEADER, -1, prev)) != NULL) {
		prev = h;
		size_t n = strlen(h->name);
		char *lower = luaapi_push_scratch(co, n + 1);
		for (size_t i = 0; i <= n; i++)
			lower[i] = (char)(h->name[i] >= 'A' && h->name[i] <= 'Z' ? h->name[i] + 32
										 : h->name[i]);
		lua_pushstring(co, lower);
		lua_remove(co, -2);
		lua_pushvalue(co, -1);
		if (lua_rawget(co, tbl) == LUA_TSTRING) {
			lua_pushfstring(co, "%s, %s", lua_tostring(co, -1), h->value);
			lua_remove(co, -2);
		} else {
			lua_pop(co, 1);
			lua_pushstring(co, h->value);
		}
		lua_rawset(co, tbl);
	}
}

static int http_push(struct luaapi_job *lj, lua_State *co)
{
	struct http_job *hj = (struct http_job *)lj;
	const char *why = hj->too_large ? "response too large"
					: outbound_failure_shown(hj->t.result, "request failed");
	if (hj->t.result != CURLE_OK || hj->too_large) {
		log_warn("http.request to %s: %s (%s)", hj->target, outbound_failure(hj->t.result),
			 hj->too_large ? "more than http.max_response"
			 : hj->err[0]  ? hj->err
				       : "no detail");
		lua_pushnil(co);
		lua_pushstring(co, why);
		return 2;
	}
	long status = 0;
	curl_easy_getinfo(hj->t.easy, CURLINFO_RESPONSE_CODE, &status);
	lua_pushinteger(co, status);
	lua_pushlstring(co, hj->body != NULL ? hj->body : "", hj->len);
	push_response_headers(co, hj->t.easy);
	return 3;
}

static void http_release(struct luaapi_job *lj)
{
	struct http_job *hj = (struct http_job *)lj;
	if (hj->t.easy != NULL)
		curl_easy_cleanup(hj->t.easy);
	curl_url_cleanup(hj->url);
	curl_slist_free_all(hj->headers);
	free(hj->body);
	free(hj);
}

/* The header lines ("\nName: value" each) into hj->headers; false when out of memory. */
static bool set_headers(struct http_job *hj, const char *lines, bool json_type)
{
	if (json_type && !has_header(lines, "Content-Type"))
		hj->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (json_type && hj->headers == NULL)
		return false;
	for (const char *p = strchr(lines, '\n'); p != NULL; p = strchr(p + 1, '\n')) {
		const char *end = strchr(p + 1, '\n');
		char *line = strndup(p + 1, end != NULL ? (size_t)(end - p - 1) : strlen(p + 1));
		struct curl_slist *grown =
		    line != NULL ? curl_slist_append(hj->headers, line) : NULL;
		free(line);
		if (grown == NULL)
			return false;
		hj->headers = grown;
	}
	return true;
}

/* The easy handle for hj: method, body (at body_idx, or nil), headers, bounds. */
static bool set_request(lua_State *L, struct http_job *hj, const char *method, int body_idx,
			long timeout_ms)
{
	CURL *e = hj->t.easy = curl_easy_init();
	if (e == NULL)
		return false;
	curl_easy_setopt(e, CURLOPT_CURLU, hj->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)hj->max);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, hj);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, hj->err);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hj->headers);
	if (!lua_isnil(L, body_idx)) {
		size_t len = 0;
		const char *body = lua_tolstring(L, body_idx, &len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		if (curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK)
			return false;
	}
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, "GET") != 0 || !lua_isnil(L, body_idx))
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	return true;
}

/* sesame.http.request{...}: status, body, headers, or nil and a message. */
static int l_request(lua_State *L)
{
	struct luaapi *api = luaapi_get(L);
	const struct config_http *cfg = &api->cfg->http;
	bool json_type = false;
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *url = luaapi_string_field(L, 1, "url", true, NULL, "sesame.http.request");
	lua_getfield(L, 1, "headers");
	push_header_lines(L, lua_gettop(L));
	push_body(L, &json_type);
	int body_idx = lua_gettop(L);
	const char *method = method_of(L, !lua_isnil(L, body_idx));
	long timeout_ms = timeout_of(L, cfg);
	struct outbound *ob = luaapi_outbound(api);
	struct http_job *hj = calloc(1, sizeof(*hj));
	if (ob == NULL || hj == NULL) {
		free(hj);
		return luaL_error(L, "sesame.http.request: cannot start a transfer: %s",
				  api->base == NULL ? "not in a worker" : "out of memory");
	}
	hj->max = cfg->max_response;
	hj->t.done = http_transfer_done;
	hj->lj.push = http_push;
	hj->lj.release = http_release;
	const char *why = check_url(hj, cfg, url);
	if (why == NULL &&
	    (!set_headers(hj, lua_tostring(L, body_idx - 1), json_type) ||
	     !set_request(L, hj, method, body_idx, timeout_ms) || outbound_start(ob, &hj->t) != 0))
		why = "request failed";
	if (why != NULL) {
		log_warn("http.request to %s refused: %s", hj->target[0] ? hj->target : "?", why);
		http_release(&hj->lj);
		lua_pushnil(L);
		lua_pushstring(L, why);
		return 2;
	}
	return luaapi_await_external(L, &hj->lj, http_cancel, "sesame.http.request");
}

void luaapi_http_inject(lua_State *L)
{
	lua_newtable(L);
	lua_pushcfunction(L, l_request);
	lua_setfield(L, -2, "request");
	lua_setfield(L, -2, "http");
}
