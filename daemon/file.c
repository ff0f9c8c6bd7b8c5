/*
 * file.c: the files sesame reads, named in the configuration.
 *
 * A relative path in the configuration resolves against the configuration file's folder (an
 * absolute path, as the daemon may change directory), and small files (the configuration, a
 * secret) are read whole, in one buffer. What is read may be a secret, so no copy of it is
 * left behind: the file is read with read(2), without stdio's buffer, and a buffer that grows
 * is copied and wiped rather than realloc'd; file_free_secret wipes the last one.
 */
#include "autoconfig.h"

#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *file_resolve(const char *dir, const char *path)
{
	if (path[0] == '/')
		return strdup(path);
	size_t n = strlen(dir) + strlen(path) + 2;
	char *out = malloc(n);
	if (out != NULL)
		snprintf(out, n, "%s/%s", dir, path);
	return out;
}

/* buf (cap bytes, len of them used) moved to a buffer of cap2 bytes; the old one wiped. */
static char *grow(char *buf, size_t len, size_t cap, size_t cap2)
{
	char *bigger = malloc(cap2);
	if (bigger != NULL && len > 0)
		memcpy(bigger, buf, len);
	if (buf != NULL)
		sodium_memzero(buf, cap);
	free(buf);
	return bigger;
}

char *file_read_len(const char *path, size_t *lenp)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	/* Room for the whole file, the read that finds its end and the NUL: one buffer, no copy. */
	size_t len = 0, cap = fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size + 2 : 4096;
	char *buf = malloc(cap);
	int err = 0;
	for (;;) {
		if (buf != NULL && len + 1 >= cap) {
			buf = grow(buf, len, cap, cap * 2);
			cap *= 2;
		}
		if (buf == NULL) {
			err = ENOMEM;
			break;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? errno : 0;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	if (err != 0) {
		file_free_secret(buf, cap);
		errno = err;
		return NULL;
	}
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return buf;
}

char *file_read(const char *path)
{
	return file_read_len(path, NULL);
}

void file_free_secret(char *buf, size_t len)
{
	if (buf == NULL)
		return;
	sodium_memzero(buf, len);
	free(buf);
}
