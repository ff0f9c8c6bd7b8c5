/*
 * master.c: the master process. It serves no request: it owns the listening sockets, forks the
 * workers, replaces those that die, and carries out signals.
 *
 * Sockets are kept per (address, slot) and survive reloads whose addresses and worker count
 * stay the same, so that no queued connection is lost. Workers belong to a generation: a
 * reload checks the new configuration first, then forks a whole new generation, and only when
 * every new worker has said it is serving are the older ones told to drain (SIGTERM). The new
 * configuration's schema is applied by a child process (cycle.c), whose exit is reaped like a
 * worker's, so that a slow database never stops this loop from feeding the watchdog. Signals
 * are read from a signalfd in one poll loop together with the workers' "ready" pipes; timers
 * (respawn backoff, the watchdog, the stop deadline, the look at the workers' heartbeats) are
 * that loop's timeout. The workers' records, their backoff and the judgements over them (a
 * hung worker, a complete set) are roster.c's. The metrics segment hears of the generation, of
 * how many of its workers serve, of whether every slot has a serving worker of any generation
 * (GET /readyz reads it), and of every restart.
 */
#include "autoconfig.h"

#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "activation.h"
#include "clock.h"
#include "config.h"
#include "control.h"
#include "cycle.h"
#include "ratelimit.h"
#include "leakcheck.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "revocation_shm.h"
#include "roster.h"
#include "scoreboard.h"
#include "worker.h"

#define HANG_CHECK_MS 250 /* how often the heartbeats are looked at */

static struct {
	struct config *cfg;
	const struct master_opts *opts;
	unsigned gen;
	struct listen_set socks;
	struct scoreboard_slot *sb;
	int sigfd;
	bool announced; /* READY=1 sent for the current generation */
	int parent_fd;	/* a detaching sesamed's parent waits on this for startup */
	bool stopping;
	uint64_t watchdog_ms, next_watchdog;
	uint64_t next_hang_check;
	struct config *pending;	    /* a reload's configuration while its schema is applied */
	struct cycle_migration mig; /* that schema's child process */
	bool reload_again;	    /* SIGHUP came while a reload was under way */
	bool start_failed;	    /* the first generation could not start: exit 1 */
	int control_fd;		    /* server.control, as the first configuration set it */
	char *control_path;
	uint64_t started_ms;
} m;

/* ---- sockets ---- */

static int open_sockets(const struct config *cfg)
{
	return listen_set_open(&m.socks, cfg->listen, cfg->nlisten, cfg->workers);
}

/* ---- workers ---- */

/*
 * In a process forked from the master: closes what is the master's alone, but the sockets of
 * slot (none when slot < 0), which go to fds; returns how many.
 */
static size_t shed_master_fds(int slot, int *fds)
{
	size_t n = 0;
	close(m.sigfd);
	for (size_t i = 0; i < m.socks.n; i++) {
		if (listen_sock_serves(&m.socks.socks[i], slot, m.cfg->workers))
			fds[n++] = m.socks.socks[i].fd;
		else
			close(m.socks.socks[i].fd);
	}
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		if (roster_at(i)->pid != 0 && roster_at(i)->ready_fd >= 0)
			close(roster_at(i)->ready_fd);
	}
	if (m.parent_fd >= 0)
		close(m.parent_fd);
	if (m.mig.fd >= 0)
		close(m.mig.fd);
	if (m.control_fd >= 0)
		close(m.control_fd);
	return n;
}

static void child_main(int rec, int slot, int ready_fd, pid_t master)
{
	int *fds = calloc(m.socks.n + 1, sizeof(int));
	if (fds == NULL)
		_exit(1);
	size_t nfds = shed_master_fds(slot, fds);
	metrics_worker_bind((size_t)rec);
	struct worker_spec spec = {.cfg = m.cfg,
				   .fds = fds,
				   .nfds = nfds,
				   .ready_fd = ready_fd,
				   .slot = &m.sb[rec],
				   .master = master};
	int status = worker_run(&spec);
	free(fds);
	leakcheck_exit(status);
}

static int spawn(int slot)
{
	int rec = roster_free_record();
	int pipefd[2];
	if (rec < 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
		log_error("cannot start a worker for slot %d: %s", slot,
			  rec < 0 ? "too many workers" : strerror(errno));
		return -1;
	}
	memset(&m.sb[rec], 0, sizeof(m.sb[rec]));
	pid_t master = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		log_error("cannot fork a worker: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if (pid == 0) {
		close(pipefd[0]);
		child_main(rec, slot, pipefd[1], master);
	}
	close(pipefd[1]);
	*roster_at(rec) = (struct roster_worker){.pid = pid,
						 .slot = slot,
						 .gen = m.gen,
						 .ready_fd = pipefd[0],
						 .started_ms = clock_mono_ms()};
	log_debug("worker %ld started for slot %d", (long)pid, slot);
	return 0;
}

static void publish_workers(void);

static void spawn_generation(void)
{
	for (int slot = 0; slot < m.cfg->workers; slot++) {
		roster_slot_reset(slot);
		if (spawn(slot) != 0)
			roster_respawn_at(slot, clock_mono_ms() + 1000);
	}
	publish_workers();
}

/* The metrics segment's view of the workers: the current generation's size and who of it
 * serves, and whether the node's worker set is complete (GET /readyz). */
static void publish_workers(void)
{
	metrics_workers(m.gen, m.cfg->workers, roster_serving(m.gen),
			roster_complete(m.cfg->workers, m.socks.inherited));
}

/*
 * Tells workers to drain (SIGTERM). Each gets server.shutdown_timeout, which it enforces
 * itself, and a few seconds more before the master kills it: a worker stuck in C code or a
 * finalizer cannot outlive a reload or a stop.
 */
static void retire_workers(bool older_only)
{
	roster_retire(older_only, m.gen,
		      clock_mono_ms() + (uint64_t)m.cfg->shutdown_timeout * 1000u + 5000u);
}

static void announce_ready(void)
{
	char status[160];
	bool passed = m.socks.inherited; /* socket activation: systemd's addresses, not ours */
	snprintf(status, sizeof(status), "serving on %s%s with %d workers",
		 passed ? m.socks.socks[0].text : m.cfg->listen[0],
		 (passed ? m.socks.n : m.cfg->nlisten) > 1 ? " and more" : "", m.cfg->workers);
	if (m.gen == 1)
		log_info("%s", status);
	else
		log_info("reloaded %s; %s", m.cfg->path, status);
	notify_ready(status);
	m.announced = true;
	if (m.parent_fd >= 0) {
		char c = 'R';
		ssize_t n = write(m.parent_fd, &c, 1);
		(void)n;
		close(m.parent_fd);
		m.parent_fd = -1;
	}
}

/* Once every slot of the current generation serves, the older generations drain. */
static void check_generation_ready(void)
{
	if (m.announced || m.stopping || roster_serving(m.gen) < m.cfg->workers)
		return;
	retire_workers(true);
	listen_set_close_unwanted(&m.socks);
	announce_ready();
}

static void on_ready_pipe(int rec)
{
	struct roster_worker *w = roster_at(rec);
	char c;
	ssize_t n = read(w->ready_fd, &c, 1);
	close(w->ready_fd);
	w->ready_fd = -1;
	if (n == 1) {
		w->ready = true;
		publish_workers();
		check_generation_ready();
	}
}

static void describe_exit(const struct roster_worker *w, int status, const char *route, char *out,
			  size_t len)
{
	int n;
	if (WIFSIGNALED(status))
		n = snprintf(out, len, "worker %ld (slot %d) killed by signal %d (%s)",
			     (long)w->pid, w->slot, WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		n = snprintf(out, len, "worker %ld (slot %d) exited with status %d", (long)w->pid,
			     w->slot, WEXITSTATUS(status));
	if (route[0] != '\0' && n > 0 && (size_t)n < len)
		snprintf(out + n, len - (size_t)n, " while serving %s", route);
}

static void migration_exited(int status);

/*
 * A worker of the first generation that cannot change to server.user: no respawn would do
 * better, so the start fails, clearly, rather than looping.
 */
static bool start_cannot_drop(int status, const char *what)
{
	if (m.gen != 1 || m.announced || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != WORKER_EXIT_PRIVS)
		return false;
	log_error("%s: it cannot run as server.user; stopping", what);
	m.start_failed = true;
	m.stopping = true;
	notify_stopping();
	retire_workers(false);
	return true;
}

static void reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (m.mig.pid != 0 && pid == m.mig.pid) {
			migration_exited(status);
			continue;
		}
		int rec = roster_find(pid);
		if (rec < 0)
			continue;
		struct roster_worker w = *roster_at(rec);
		if (w.ready_fd >= 0)
			close(w.ready_fd);
		roster_at(rec)->pid = 0;
		metrics_worker_gone((size_t)rec);
		/* Its lease on the revoked ids' fetching: another worker takes it at its next look.
		 */
		revocation_shm_release(revocation_shm_node(), pid);
		char what[300];
		describe_exit(&w, status, m.sb[rec].route, what, sizeof(what));
		bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		if (w.retiring || m.stopping) {
			if (clean)
				log_debug("%s", what);
			else
				log_warn("%s", what);
			continue;
		}
		if (start_cannot_drop(status, what) || w.gen != m.gen)
			continue;
		uint64_t delay = roster_backoff(w.slot, clock_mono_ms() - w.started_ms);
		metrics_restart(w.hung		      ? METRICS_RESTART_HANG
				: WIFSIGNALED(status) ? METRICS_RESTART_CRASH
						      : METRICS_RESTART_EXIT);
		if (delay)
			log_error("%s; it keeps dying: respawning in %llu ms", what,
				  (unsigned long long)delay);
		else
			log_error("%s; respawning", what);
	}
}

/* ---- signals ---- */

static void reload(void);

static void reload_failed(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		log_error("%s", errs->msg[i]);
	config_errors_free(errs);
	config_free(m.pending);
	m.pending = NULL;
	if (m.stopping) {
		log_info("reload abandoned: stopping");
		return;
	}
	log_error("reload failed: still serving the previous configuration");
	notify_ready("reload failed: serving the previous configuration");
}

/* The reload's schema child: signals as a plain process gets them, none of the master's fds. */
static void migration_child(void)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	shed_master_fds(-1, NULL);
}

/* The new configuration is checked and its schema applied: a new generation serves it. */
static void reload_commit(void)
{
	if (open_sockets(m.pending) != 0) {
		struct config_errors errs = {0};
		/* open_sockets cleared the wanted marks: the running configuration keeps its own.
		 */
		open_sockets(m.cfg);
		reload_failed(&errs);
		return;
	}
	log_set_level(m.pending->log_level);
	if ((size_t)m.pending->jwt.revocation_capacity !=
	    revocation_shm_capacity(revocation_shm_node()))
		log_warn("jwt.revocation_capacity: the node's set keeps its size (%zu ids) until "
			 "sesamed restarts",
			 revocation_shm_capacity(revocation_shm_node()));
	config_free(m.cfg);
	m.cfg = m.pending;
	m.pending = NULL;
	m.gen++;
	m.announced = false;
	spawn_generation();
}

/* A reload ended, one way or the other: one asked for meanwhile starts now. */
static void reload_ended(void)
{
	if (m.reload_again && !m.stopping) {
		m.reload_again = false;
		reload();
	}
}

/* The reload's schema child exited with status. */
static void migration_exited(int status)
{
	struct config_errors errs = {0};
	if (cycle_migrate_finish(&m.mig, status, &errs) != 0) {
		reload_failed(&errs);
	} else if (m.stopping) {
		config_free(m.pending);
		m.pending = NULL;
	} else {
		reload_commit();
	}
	reload_ended();
}

/*
 * Loads and checks the configuration here; its schema is applied by a child, whose exit
 * (reaped like a worker's) finishes the reload, so that this loop keeps turning meanwhile.
 */
static void reload(void)
{
	if (m.pending != NULL) {
		log_info("reload asked for while one is under way: reloading again after it");
		m.reload_again = true;
		return;
	}
	struct config_errors errs = {0};
	notify_reloading();
	log_info("reloading %s", m.cfg->path);
	m.pending = cycle_load(m.cfg->path, m.opts->workers, &errs);
	if (m.pending == NULL ||
	    cycle_migrate_start(m.pending, &m.mig, migration_child, &errs) != 0) {
		reload_failed(&errs);
		return;
	}
	config_errors_free(&errs);
	if (m.mig.pid == 0) {
		reload_commit();
		reload_ended();
	}
}

static void begin_stop(int sig)
{
	if (m.stopping)
		return;
	log_info("%s: stopping once in-flight requests are done", strsignal(sig));
	notify_stopping();
	m.stopping = true;
	retire_workers(false);
	/* A reload's schema child is not waited for: its transaction is the database's to undo. */
	if (m.mig.pid != 0)
		kill(m.mig.pid, SIGTERM);
}

static void handle_signal(void)
{
	struct signalfd_siginfo si;
	while (read(m.sigfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			reap();
			break;
		case SIGHUP:
			if (!m.stopping)
				reload();
			break;
		case SIGTERM:
		case SIGINT:
		case SIGQUIT:
			begin_stop((int)si.ssi_signo);
			break;
		default:
			break;
		}
	}
}

/* ---- the control socket ---- */

/* What sesamectl status shows: the master, its generation and every worker alive. */
static json_t *status_doc(void)
{
	json_t *workers = roster_status();
	return json_pack("{sI sf sI si ss ss sI so*}", "pid", (json_int_t)getpid(), "uptime",
			 (double)(clock_mono_ms() - m.started_ms) / 1000.0, "generation",
			 (json_int_t)m.gen, "workers_wanted", m.cfg->workers, "config", m.cfg->path,
			 "version", PACKAGE_VERSION, "revocation_fetcher",
			 (json_int_t)revocation_shm_holder(revocation_shm_node()), "workers",
			 workers);
}

static void on_control(void)
{
	json_t *doc = status_doc();
	control_answer(m.control_fd, doc);
	json_decref(doc);
}

/* ---- the loop ---- */

static int next_timeout(void)
{
	uint64_t now = clock_mono_ms();
	uint64_t next = roster_next_respawn(m.cfg->workers), kill_at = roster_next_kill();
	if (kill_at < next)
		next = kill_at;
	if (m.watchdog_ms && m.next_watchdog < next)
		next = m.next_watchdog;
	if (roster_alive() > 0 && m.next_hang_check < next)
		next = m.next_hang_check;
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now);
}

static void tick(void)
{
	uint64_t now = clock_mono_ms();
	if (!m.stopping)
		roster_respawn_due(m.cfg->workers, now, spawn);
	if (m.watchdog_ms && now >= m.next_watchdog) {
		if (roster_alive() > 0)
			notify_watchdog();
		m.next_watchdog = now + m.watchdog_ms / 2;
	}
	roster_kill_overdue(now);
	publish_workers();
	if (now >= m.next_hang_check) {
		roster_kill_hung(now, m.sb, m.cfg->hang_timeout_ms);
		m.next_hang_check = now + HANG_CHECK_MS;
	}
}

static void loop(void)
{
	struct pollfd pfd[ROSTER_RECORDS + 2];
	int recs[ROSTER_RECORDS + 2];
	while (!m.stopping || roster_alive() > 0 || m.mig.pid != 0) {
		nfds_t n = 0;
		pfd[n++] = (struct pollfd){.fd = m.sigfd, .events = POLLIN};
		recs[n] = -1;
		pfd[n++] = (struct pollfd){.fd = m.control_fd, .events = POLLIN};
		for (int i = 0; i < ROSTER_RECORDS; i++) {
			const struct roster_worker *w = roster_at(i);
			if (w->pid != 0 && w->ready_fd >= 0) {
				recs[n] = i;
				pfd[n++] = (struct pollfd){.fd = w->ready_fd, .events = POLLIN};
			}
		}
		int rc = poll(pfd, n, next_timeout());
		if (rc < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			break;
		}
		if (rc > 0 && pfd[1].revents != 0)
			on_control();
		for (nfds_t i = 2; rc > 0 && i < n; i++) {
			if (pfd[i].revents != 0 && roster_at(recs[i])->ready_fd == pfd[i].fd)
				on_ready_pipe(recs[i]);
		}
		if (rc > 0 && pfd[0].revents != 0)
			handle_signal();
		tick();
	}
}

/* Without -f: the parent waits until the daemon serves, then exits 0 (1 when it could not). */
static int detach(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0) {
		char c;
		close(p[1]);
		_exit(read(p[0], &c, 1) == 1 ? 0 : 1);
	}
	close(p[0]);
	m.parent_fd = p[1];
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

int master_run(struct config *cfg, const struct master_opts *opts)
{
	sigset_t mask;
	int status = 1;
	memset(&m, 0, sizeof(m));
	m.cfg = cfg;
	m.opts = opts;
	m.gen = 1;
	m.sigfd = -1;
	m.parent_fd = -1;
	m.mig.fd = -1;
	m.control_fd = -1;
	m.started_ms = clock_mono_ms();

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGQUIT);
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	m.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	m.sb = scoreboard_new(ROSTER_RECORDS);
	/* The rate-limit counters, the metrics and the revoked ids outlive reloads: made once,
	 * before any worker. */
	if (m.sigfd < 0 || m.sb == NULL || ratelimit_shared_init() != 0 ||
	    metrics_shared_init(ROSTER_RECORDS) != 0 ||
	    revocation_shm_init((size_t)cfg->jwt.revocation_capacity) != 0) {
		log_error("cannot set up the master: %s", strerror(errno));
		goto done;
	}
	if (activation_take(&m.socks) < 0 || open_sockets(cfg) != 0)
		goto done;
	if (!opts->foreground && detach() != 0)
		goto done;
	if (cfg->control != NULL && (m.control_path = strdup(cfg->control)) != NULL)
		m.control_fd = control_open(m.control_path, &cfg->privs);
	m.watchdog_ms = notify_watchdog_usec() / 1000u;
	m.next_watchdog = clock_mono_ms();
	notify_status("starting workers");
	spawn_generation();
	loop();
	status = m.start_failed ? 1 : 0;
	log_info("stopped");
done:
	control_close(m.control_fd, m.control_path);
	free(m.control_path);
	listen_set_free(&m.socks);
	if (m.sigfd >= 0)
		close(m.sigfd);
	scoreboard_free(m.sb, ROSTER_RECORDS);
	config_free(m.pending);
	config_free(m.cfg);
	return status;
}
