/*
 * config_diag.c: the configuration's diagnostics.
 *
 * Nothing stops at the first problem: every unknown key, wrong type and bad value is collected
 * as "FILE:LINE: key: message", and an unknown key that is a likely typo of a known one gets a
 * "did you mean". Lua records no line for a key inside a table constructor, so the line is
 * found by scanning the source, comments blanked out, for the key's assignment.
 */
#include "autoconfig.h"

#include "config_diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void config_errors_add(struct config_errors *errs, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	char **grown = realloc(errs->msg, (errs->n + 1) * sizeof(*grown));
	char *copy = strdup(buf);
	if (grown == NULL || copy == NULL) {
		free(copy);
		if (grown != NULL)
			errs->msg = grown;
		return;
	}
	errs->msg = grown;
	errs->msg[errs->n++] = copy;
}

void config_errors_free(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		free(errs->msg[i]);
	free(errs->msg);
	errs->msg = NULL;
	errs->n = 0;
}

/* ---- finding the line of a key ---- */

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/* Is name, at p, a whole word followed by an assignment ("name =", not "name ==")? */
static bool assigns_at(const char *line, const char *p, const char *name, size_t len)
{
	if (p > line && (is_name_char(p[-1])))
		return false;
	const char *q = p + len;
	if (p > line && p[-1] == '"' && q[0] == '"' && q[1] == ']') /* ["name"] = */
		q += 2;
	while (*q == ' ' || *q == '\t')
		q++;
	return q[0] == '=' && q[1] != '=';
}

static bool line_assigns(const char *line, const char *name)
{
	size_t len = strlen(name);
	for (const char *p = strstr(line, name); p != NULL; p = strstr(p + 1, name)) {
		if (assigns_at(line, p, name, len))
			return true;
	}
	return false;
}

/* Length of the long bracket at s ("[[", "[==["), or 0 when s does not open one. */
static size_t long_bracket(const char *s, size_t *level)
{
	size_t n = 1;
	if (s[0] != '[')
		return 0;
	while (s[n] == '=')
		n++;
	if (s[n] != '[')
		return 0;
	*level = n - 1;
	return n + 1;
}

/* Skips a long string or comment body from s; blanks it (but its newlines) when blank. */
static char *skip_long(char *s, size_t level, bool blank)
{
	for (; *s != '\0'; s++) {
		if (s[0] == ']' && strspn(s + 1, "=") == level && s[level + 1] == ']') {
			if (blank)
				memset(s, ' ', level + 2);
			return s + level + 2;
		}
		if (blank && *s != '\n')
			*s = ' ';
	}
	return s;
}

/* Blanks out the comments of Lua source, keeping its lines, so they cannot look like keys. */
static void blank_comments(char *s)
{
	size_t level, open;
	while (*s != '\0') {
		if (*s == '"' || *s == '\'') {
			char quote = *s++;
			while (*s != '\0' && *s != quote && *s != '\n')
				s += (*s == '\\' && s[1] != '\0') ? 2 : 1;
			s += *s == quote;
		} else if (s[0] == '-' && s[1] == '-') {
			memset(s, ' ', 2);
			s += 2;
			if ((open = long_bracket(s, &level)) != 0) {
				memset(s, ' ', open);
				s = skip_long(s + open, level, true);
			} else {
				while (*s != '\0' && *s != '\n')
					*s++ = ' ';
			}
		} else if ((open = long_bracket(s, &level)) != 0) {
			s = skip_long(s + open, level, false);
		} else {
			s++;
		}
	}
}

int config_find_line(const char *src, const char *keypath)
{
	char parts[4][64];
	size_t nparts = 0;
	for (const char *k = keypath; *k != '\0' && nparts < 4;) {
		size_t len = strcspn(k, ".");
		if (len >= sizeof(parts[0]))
			return 0;
		memcpy(parts[nparts], k, len);
		parts[nparts++][len] = '\0';
		k += len;
		if (*k == '.')
			k++;
	}

	char *text = strdup(src);
	if (text == NULL)
		return 0;
	blank_comments(text);
	size_t want = 0;
	int found = 0, lineno = 0;
	char line[4096];
	for (const char *p = text; *p != '\0' && want < nparts;) {
		size_t len = strcspn(p, "\n");
		size_t copy = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
		memcpy(line, p, copy);
		line[copy] = '\0';
		lineno++;
		/* Several parts of the path may sit on one line: "server = { workers = 4 }". */
		while (want < nparts && line_assigns(line, parts[want])) {
			found = lineno;
			want++;
		}
		p += len;
		if (*p == '\n')
			p++;
	}
	free(text);
	return want == nparts ? found : 0;
}

void config_error_at(struct config_errors *errs, const char *file, const char *src,
		     const char *keypath, const char *fmt, ...)
{
	char msg[LOG_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int line = src != NULL ? config_find_line(src, keypath) : 0;
	if (line == 0 && src != NULL) {
		/* A key the scan cannot place is reported at its section. */
		char top[64];
		snprintf(top, sizeof(top), "%.*s", (int)strcspn(keypath, "."), keypath);
		line = config_find_line(src, top);
	}
	config_errors_add(errs, "%s:%d: %s: %s", file, line > 0 ? line : 1, keypath, msg);
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 32 || lb > 32)
		return 99;
	size_t d[33][33];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

bool config_similar(const char *key, const char *known)
{
	return edit_distance(key, known) <= 2;
}
