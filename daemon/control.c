/*
 * control.c: the master's control socket. A unix stream socket at server.control (by default
 * /run/sesame/control, in the RuntimeDirectory the unit makes), mode 0660, owned by the user
 * the master runs as and server.group (the master's own group under the unit, which cannot
 * change a file's group). Each connection gets one JSON line, the master's state,
 * and is closed: the master reads nothing from it. The socket is non-blocking and the line
 * small, far below a socket's buffer, so answering never makes the master's loop wait; a
 * client whose buffer is full anyway loses its answer, not the master its time.
 */
#include "autoconfig.h"

#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* Connections answered per wake-up: more wait for the next turn of the loop. */
#define ANSWERS_PER_TURN 16

static bool fill_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return false;
	memcpy(sa->sun_path, path, strlen(path));
	return true;
}

/* A socket file no one listens on (a master that died) is removed; a live one is kept. */
static int clear_stale(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		errno = EEXIST;
		return -1;
	}
	/* Non-blocking: a live master whose backlog is full answers EAGAIN, not a wait. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return -1;
	int rc = connect(probe, (const struct sockaddr *)sa, sizeof(*sa));
	int why = rc == 0 ? EADDRINUSE : errno;
	close(probe);
	if (why != ECONNREFUSED) {
		errno = why == EAGAIN ? EADDRINUSE : why;
		return -1;
	}
	return unlink(path);
}

/*
 * The socket file to server.group, by its path, once lstat shows it is still the socket this
 * process made (no symbolic link is followed). Nothing to do when the group is the process's
 * own already, as under the shipped unit (Group=), whose system call filter refuses chown.
 */
static int set_group(const char *path, const struct privs *privs)
{
	struct stat st;
	if (privs->group == NULL || privs->gid == getegid())
		return 0;
	if (lstat(path, &st) != 0)
		return -1;
	if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
		errno = EEXIST;
		return -1;
	}
	return fchownat(AT_FDCWD, path, (uid_t)-1, privs->gid, AT_SYMLINK_NOFOLLOW);
}

int control_open(const char *path, const struct privs *privs)
{
	struct sockaddr_un sa;
	int fd = -1;
	if (path == NULL)
		return -1;
	if (!fill_addr(&sa, path)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	if (clear_stale(path, &sa) != 0)
		goto fail;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	/* Made 0660 by bind itself: no moment with wider rights, no chmod by path. */
	mode_t old = umask(0117);
	int bound = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (bound != 0)
		goto fail;
	if (set_group(path, privs) != 0 || listen(fd, ANSWERS_PER_TURN) != 0) {
		unlink(path);
		goto fail;
	}
	return fd;
fail:
	log_warn("server.control: cannot listen on %s: %s; sesamectl status will not reach this "
		 "master (check that its folder exists and is writable, or set server.control)",
		 path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

void control_answer(int fd, const json_t *doc)
{
	char *text = json_dumps(doc, JSON_COMPACT);
	size_t len = text != NULL ? strlen(text) : 0;
	if (text != NULL)
		text[len++] = '\n'; /* over the NUL: the line is sent by length */
	for (int i = 0; i < ANSWERS_PER_TURN; i++) {
		int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0)
			break;
		if (text != NULL) {
			ssize_t n = send(c, text, len, MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)n;
		}
		close(c);
	}
	free(text);
}

void control_close(int fd, const char *path)
{
	if (fd < 0)
		return;
	close(fd);
	if (path != NULL)
		unlink(path);
}
