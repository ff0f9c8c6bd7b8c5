/*
 * sesamectl_events.c: sesamectl events [--user ID] [--since T] [--limit N] [--json], the
 * stored auth events (events.store), oldest first, one line each: time, event, user and the
 * details; or with --json the events as JSON lines, as the audit log writes them. T is Unix
 * seconds, an ISO 8601 date or date and time (UTC unless it names its offset), or a time
 * ago: "30m", "1h", "7d". The storage hands the events over in pages, by id.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "sesamectl.h"

#define PAGE 500

struct events_opts {
	long long user, since_ms, limit;
	bool json;
};

struct listing {
	const struct events_opts *o;
	long long last_id, shown;
};

static int events_usage(void)
{
	fprintf(stderr, "Usage: sesamectl [-c FILE] events [--user ID] [--since T] [--limit N] "
			"[--json]\n"
			"T: Unix seconds, an ISO 8601 date or date and time, or a time ago (30m, "
			"1h, 7d).\n");
	return CTL_USAGE;
}

/* A time ago: N and s, m, h or d. */
static bool parse_ago(const char *s, long long now_ms, long long *out)
{
	char *end = NULL;
	long long n = strtoll(s, &end, 10);
	const char *units = "smhd";
	static const long long secs[] = {1, 60, 3600, 86400};
	const char *u = end != s && end[0] != '\0' && end[1] == '\0' ? strchr(units, end[0]) : NULL;
	if (u == NULL || n < 0 || n > 100000000)
		return false;
	*out = now_ms - n * secs[u - units] * 1000;
	return true;
}

static bool two_digits(const char *s, int max, int *out)
{
	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
		return false;
	*out = (s[0] - '0') * 10 + (s[1] - '0');
	return *out <= max;
}

/* The whole of s is a UTC offset, Z or +HH:MM or -HH:MM: into *out, in seconds east. */
static bool parse_offset(const char *s, long *out)
{
	int hh, mm;
	*out = 0;
	if (strcmp(s, "Z") == 0 || *s == '\0')
		return true;
	if ((s[0] != '+' && s[0] != '-') || !two_digits(s + 1, 23, &hh) || s[3] != ':' ||
	    !two_digits(s + 4, 59, &mm) || s[6] != '\0')
		return false;
	*out = (s[0] == '-' ? -1 : 1) * (hh * 3600L + mm * 60L);
	return true;
}

/* An ISO 8601 date, or date and time with an optional Z or +HH:MM offset. */
static bool parse_iso(const char *s, long long *out)
{
	struct tm tm = {0};
	long offset;
	const char *rest = strptime(s, "%Y-%m-%d", &tm);
	if (rest != NULL && (*rest == 'T' || *rest == ' '))
		rest = strptime(rest + 1, "%H:%M:%S", &tm);
	if (rest == NULL || !parse_offset(rest, &offset))
		return false;
	*out = ((long long)timegm(&tm) - offset) * 1000;
	return true;
}

static bool parse_since(const char *s, long long *out)
{
	char *end = NULL;
	long long secs = strtoll(s, &end, 10);
	if (end != s && *end == '\0' && secs >= 0) {
		*out = secs * 1000;
		return true;
	}
	return parse_ago(s, clock_wall_ms(), out) || parse_iso(s, out);
}

static int parse_opts(int argc, char **argv, struct events_opts *o)
{
	static const struct option longs[] = {{"user", required_argument, NULL, 'u'},
					      {"since", required_argument, NULL, 's'},
					      {"limit", required_argument, NULL, 'n'},
					      {"json", no_argument, NULL, 'j'},
					      {NULL, 0, NULL, 0}};
	char *end;
	int c;
	*o = (struct events_opts){.limit = 100};
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		if (c == 'u' && (o->user = strtoll(optarg, &end, 10)) > 0 && *end == '\0')
			continue;
		if (c == 's' && parse_since(optarg, &o->since_ms))
			continue;
		if (c == 'n' && (o->limit = strtoll(optarg, &end, 10)) > 0 && *end == '\0')
			continue;
		if (c == 'j') {
			o->json = true;
			continue;
		}
		return -1;
	}
	return optind == argc ? 0 : -1;
}

/* The event as the audit log writes it: {event, at, user, and its details}. */
static json_t *event_json(const struct sesame_event *e)
{
	json_t *ev = json_pack("{s:s, s:f}", "event", e->name, "at", (double)e->at_ms / 1000.0);
	json_t *details = e->data != NULL ? json_loads(e->data, 0, NULL) : NULL;
	if (ev != NULL && e->user_id != 0)
		json_object_set_new(ev, "user", json_integer(e->user_id));
	if (ev != NULL && json_is_object(details))
		json_object_update(ev, details);
	json_decref(details);
	return ev;
}

static void print_event(void *ctx, const struct sesame_event *e)
{
	struct listing *l = ctx;
	l->last_id = e->id;
	if (l->shown >= l->o->limit)
		return;
	l->shown++;
	if (l->o->json) {
		json_t *ev = event_json(e);
		char *text = ev != NULL
				 ? json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER |
						      JSON_ENSURE_ASCII | JSON_REAL_PRECISION(15))
				 : NULL;
		if (text != NULL)
			printf("%s\n", text);
		free(text);
		json_decref(ev);
		return;
	}
	char when[32], user[24] = "-";
	time_t t = (time_t)(e->at_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	if (e->user_id != 0)
		snprintf(user, sizeof(user), "%lld", e->user_id);
	printf("%s  %-16s %-8s %s\n", when, e->name, user, e->data != NULL ? e->data : "");
}

/* Pages through the events until limit of them are shown or none is left. */
static int list_events(struct storage *st, const struct events_opts *o)
{
	struct listing l = {.o = o};
	char err[LOG_ERR_MAX] = "";
	for (;;) {
		long long before = l.shown,
			  page = o->limit - l.shown < PAGE ? o->limit - l.shown : PAGE;
		enum sesame_storage_result r =
		    st->fn->event_list(st->state, o->user, o->since_ms, l.last_id, page,
				       print_event, &l, err, sizeof(err));
		if (r != SESAME_STORAGE_OK) {
			fprintf(stderr, "sesamectl: storage: %s\n", err[0] ? err : "failed");
			return CTL_FAILED;
		}
		if (l.shown - before < page || l.shown >= o->limit)
			return CTL_OK;
	}
}

int ctl_events(const char *path, int argc, char **argv)
{
	struct events_opts o;
	struct storage st;
	if (parse_opts(argc, argv, &o) != 0)
		return events_usage();
	struct config *cfg = ctl_storage_open(path, &st, false);
	if (cfg == NULL)
		return CTL_FAILED;
	int status = CTL_FAILED;
	if (!cfg->events.store)
		fprintf(stderr, "sesamectl: events are not stored (events.store is false): the "
				"audit log (events.audit_log) has them\n");
	else if (st.fn->event_list == NULL)
		fprintf(stderr, "sesamectl: the storage plugin keeps no events (ABI 1.0)\n");
	else
		status = list_events(&st, &o);
	ctl_storage_close(cfg);
	return status;
}
