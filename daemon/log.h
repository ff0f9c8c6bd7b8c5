/* log.h: the daemon's error log and the per-request access log. */
#ifndef SESAME_LOG_H
#define SESAME_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_init(bool use_syslog);
void log_set_level(enum log_level level);
int log_level_parse(const char *name, enum log_level *out);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/*
 * The size of every buffer a function writes its error message into (err, errlen): room for a
 * message that names a file's path.
 */
#define LOG_ERR_MAX 768

struct access_entry {
	const char *method;
	const char *path; /* without the query string: it may carry secrets */
	int status;
	double duration_ms;
	const char *remote;
	const char *request_id;
};

/*
 * A log of JSON lines (the access log, the audit log): stderr, a file, or none. The file is
 * opened as root, before the process changes user, O_APPEND and never through a symbolic
 * link; each line is written whole with one write(2), so that lines from several processes
 * never interleave; on stderr no prefix is added.
 */
struct log_sink {
	int fd; /* -1: none */
	bool owned;
};
#define LOG_SINK_NONE                                                                              \
	{                                                                                          \
		.fd = -1, .owned = false                                                           \
	}

/* dest: "stderr", a file path, or NULL for none; what names the log in a message. */
int log_sink_open(struct log_sink *s, const char *dest, const char *what);
void log_sink_close(struct log_sink *s);
void log_sink_write(const struct log_sink *s, const char *line, size_t n);

/* dest: "stderr", a file path, or NULL for no access log. */
int accesslog_open(const char *dest);
void accesslog_close(void);
void accesslog_write(const struct access_entry *e);
/* Formats one access-log line (with its newline) into buf; returns its length. */
size_t accesslog_format(char *buf, size_t size, const struct access_entry *e, long pid);

#endif
