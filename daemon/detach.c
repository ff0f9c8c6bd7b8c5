/*
 * detach.c: sesamed without -f. The command forks the daemon, which leaves the terminal's
 * session, logs to syslog, and reports on a pipe: 'R' once every worker serves, or 'E' and
 * the reason it gave up (server.start_timeout passed, or its workers cannot run as
 * server.user). The command returns 0 on 'R'; on 'E' it prints the reason and returns 1 once
 * the pipe closes, that is once the daemon is gone, so that no sesamed keeps running behind
 * an exit status that says it failed. The daemon enforces server.start_timeout itself; the
 * command waits that long and a stop's worth more (server.shutdown_timeout) for a daemon that
 * says nothing, then stops it. The command forks with the master's signals blocked (they are
 * the master's signalfd's): it unblocks them, so that Ctrl-C or a SIGTERM reaches it, and
 * passes them on to the daemon as SIGTERM, since whoever stops a starting sesamed means all of
 * it; it then waits for the daemon to be gone, as after 'E'.
 */
#include "autoconfig.h"

#include "detach.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"

#define SLACK_S 10 /* beyond the daemon's own deadlines: it kills late workers after 5 s */

static volatile sig_atomic_t daemon_pid, stopped_by;

static void pass_on(int sig)
{
	stopped_by = sig;
	kill((pid_t)daemon_pid, SIGTERM);
}

/* The waiting command takes the signals that stop it, and passes them on to the daemon. */
static void take_signals(pid_t pid)
{
	sigset_t none;
	struct sigaction sa = {.sa_handler = pass_on};
	daemon_pid = pid;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/*
 * Reads what comes on fd until deadline (monotonic ms), keeping the first size bytes in msg:
 * 1 when bytes came, 0 once the pipe closed (the daemon is gone), -1 at the deadline.
 */
static int read_some(int fd, char *msg, size_t size, size_t *len, uint64_t deadline)
{
	for (;;) {
		uint64_t now = clock_mono_ms();
		if (now >= deadline)
			return -1;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int rc = poll(&p, 1, (int)(deadline - now));
		if (rc < 0 && errno != EINTR)
			return 0;
		if (rc <= 0)
			continue;
		char spill[256];
		bool room = *len < size;
		ssize_t n = read(fd, room ? msg + *len : spill, room ? size - *len : sizeof(spill));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		if (room)
			*len += (size_t)n;
		return 1;
	}
}

static _Noreturn void await_daemon(int fd, pid_t pid, const struct config *cfg)
{
	char msg[LOG_ERR_MAX + 2];
	size_t len = 0;
	uint64_t wait_ms =
	    (uint64_t)cfg->start_timeout_ms + ((uint64_t)cfg->shutdown_timeout + SLACK_S) * 1000u;
	uint64_t deadline = clock_mono_ms() + wait_ms;
	int rc;
	while ((rc = read_some(fd, msg, sizeof(msg) - 1, &len, deadline)) > 0) {
		if (msg[0] == 'R' && !stopped_by)
			_exit(0);
	}
	msg[len] = '\0';
	if (len > 1 && msg[0] == 'E')
		fprintf(stderr, "sesamed: %s\n", msg + 1);
	if (stopped_by && rc == 0) {
		/* Its pipe closes before it is gone when it was serving: wait for that too. */
		while (waitpid(pid, NULL, WNOHANG) == 0 && clock_mono_ms() < deadline)
			usleep(50000);
		fprintf(stderr, "sesamed: %s: the daemon (pid %ld) stopped\n",
			strsignal(stopped_by), (long)pid);
	} else if (rc < 0) {
		fprintf(
		    stderr, "sesamed: the daemon (pid %ld) did not %s within %llu s: stopping it\n",
		    (long)pid, len > 0 ? "stop" : "report", (unsigned long long)(wait_ms / 1000u));
		kill(pid, SIGTERM);
	} else if (len == 0) {
		fprintf(stderr, "sesamed: the daemon exited before it served (the system log says "
				"why)\n");
	}
	_exit(1);
}

int detach_start(const struct config *cfg, int *report_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		take_signals(pid);
		await_daemon(p[0], pid, cfg);
	}
	close(p[0]);
	*report_fd = p[1];
	setsid();
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	log_init(true);
	return chdir("/");
}

void detach_tell(int *report_fd, char verdict, const char *why)
{
	if (*report_fd < 0)
		return;
	char msg[LOG_ERR_MAX + 1];
	int n = snprintf(msg, sizeof(msg), "%c%s", verdict, why);
	ssize_t w = write(*report_fd, msg, n > 0 && (size_t)n < sizeof(msg) ? (size_t)n : 1);
	(void)w;
	/* 'R' is final: the command exits 0 on it; it is gone and reads nothing more. */
	if (verdict == 'R') {
		close(*report_fd);
		*report_fd = -1;
	}
}
