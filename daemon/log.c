/*
 * log.c: the daemon's error log and the access log.
 *
 * Error messages go to stderr, one line each. Under systemd (JOURNAL_STREAM set) every line
 * starts with a "<N>" priority prefix that journald turns into the entry's priority; a
 * detached daemon logs to syslog instead. The access log is one JSON object per line,
 * written with a single write(2) so that lines from several workers never interleave; the
 * audit log (events.c) is written through the same kind of sink.
 * Neither log ever receives a request body, a query string, a password or a token.
 */
#include "autoconfig.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_LEVEL_INFO;
static bool to_syslog;
static bool to_journal;
static struct log_sink access_sink = LOG_SINK_NONE;
static long access_pid;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int level_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

void log_init(bool use_syslog)
{
	to_syslog = use_syslog;
	to_journal = !use_syslog && getenv("JOURNAL_STREAM") != NULL;
	if (to_syslog)
		openlog("sesamed", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_set_level(enum log_level level)
{
	min_level = level;
}

int log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static size_t format_time(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
	return n;
}

/*
 * Lays msg out as lines that each start with head (a traceback has several), continuation
 * lines indented. Other control characters are escaped: a message that carries a client's
 * text cannot forge a log line or a journal priority.
 */
static size_t format_lines(char *out, size_t size, const char *head, const char *msg)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0, headlen = strlen(head);
	bool start = true;
	for (const unsigned char *p = (const unsigned char *)msg; n + headlen + 8 < size; p++) {
		if (start) {
			memcpy(out + n, head, headlen);
			n += headlen;
			if (p != (const unsigned char *)msg) {
				memcpy(out + n, "  ", 2);
				n += 2;
			}
			start = false;
		}
		if (*p == '\0' || *p == '\n') {
			out[n++] = '\n';
			if (*p == '\0')
				break;
			start = true;
		} else if (*p < 0x20 && *p != '\t') {
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		} else {
			out[n++] = (char)*p;
		}
	}
	if (n == 0 || out[n - 1] != '\n')
		out[n++] = '\n';
	out[n] = '\0';
	return n;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > min_level)
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	char head[80];
	if (to_syslog) {
		head[0] = '\0';
	} else if (to_journal) {
		snprintf(head, sizeof(head), "<%d>%s: ", level_prio[level], level_names[level]);
	} else {
		char ts[40];
		format_time(ts, sizeof(ts));
		snprintf(head, sizeof(head), "%s sesamed[%ld] %s: ", ts, (long)getpid(),
			 level_names[level]);
	}
	char out[8192];
	size_t n = format_lines(out, sizeof(out), head, msg);
	if (to_syslog) {
		syslog(level_prio[level], "%s", out);
		return;
	}
	ssize_t r = write(STDERR_FILENO, out, n);
	(void)r;
}

/* Opened as root, before the worker changes user: a symbolic link planted there is refused. */
int log_sink_open(struct log_sink *s, const char *dest, const char *what)
{
	log_sink_close(s);
	if (dest == NULL)
		return 0;
	if (strcmp(dest, "stderr") == 0) {
		s->fd = STDERR_FILENO;
		return 0;
	}
	s->fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (s->fd < 0) {
		log_error("cannot open %s %s: %s", what, dest, strerror(errno));
		return -1;
	}
	s->owned = true;
	return 0;
}

void log_sink_close(struct log_sink *s)
{
	if (s->owned && s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->owned = false;
}

void log_sink_write(const struct log_sink *s, const char *line, size_t n)
{
	if (s->fd < 0)
		return;
	ssize_t r = write(s->fd, line, n);
	(void)r;
}

int accesslog_open(const char *dest)
{
	access_pid = (long)getpid();
	return log_sink_open(&access_sink, dest, "access log");
}

void accesslog_close(void)
{
	log_sink_close(&access_sink);
}

/* Appends s as the inside of a JSON string, escaping what JSON requires. */
static size_t put_json_string(char *buf, size_t size, size_t n, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	/* Leave room for the fixed parts of the line that follow: a long path is cut short. */
	size_t limit = size > 320 ? size - 320 : 0;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (n + 7 >= limit)
			break;
		if (*p == '"' || *p == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)*p;
		} else if (*p < 0x20 || *p >= 0x7f) {
			/* Bytes outside printable ASCII are escaped so that a line is always valid
			 * JSON. */
			n += (size_t)snprintf(buf + n, size - n, "\\u00%c%c", hex[*p >> 4],
					      hex[*p & 15]);
		} else {
			buf[n++] = (char)*p;
		}
	}
	return n;
}

size_t accesslog_format(char *buf, size_t size, const struct access_entry *e, long pid)
{
	char ts[40];
	format_time(ts, sizeof(ts));
	size_t n = (size_t)snprintf(buf, size, "{\"time\":\"%s\",\"method\":\"", ts);
	n = put_json_string(buf, size, n, e->method ? e->method : "-");
	n += (size_t)snprintf(buf + n, size - n, "\",\"path\":\"");
	n = put_json_string(buf, size, n, e->path ? e->path : "-");
	n += (size_t)snprintf(buf + n, size - n,
			      "\",\"status\":%d,\"duration_ms\":%.3f,\"remote\":\"", e->status,
			      e->duration_ms);
	n = put_json_string(buf, size, n, e->remote ? e->remote : "-");
	n += (size_t)snprintf(buf + n, size - n, "\",\"pid\":%ld,\"request_id\":\"", pid);
	n = put_json_string(buf, size, n, e->request_id ? e->request_id : "-");
	n += (size_t)snprintf(buf + n, size - n, "\"}\n");
	return n;
}

void accesslog_write(const struct access_entry *e)
{
	if (access_sink.fd < 0)
		return;
	char line[4096];
	size_t n = accesslog_format(line, sizeof(line), e, access_pid);
	log_sink_write(&access_sink, line, n);
}
