/*
 * master.c: the master process. It serves no request: it owns the listening sockets, forks the
 * workers, replaces those that die, and carries out signals.
 *
 * Sockets are kept per (address, slot) and survive reloads whose addresses and worker count
 * stay the same, so that no queued connection is lost. Workers belong to a generation: a
 * reload checks the new configuration first, then forks a whole new generation, and only when
 * every new worker has said it is serving are the older ones told to drain (SIGTERM); a reload
 * whose generation does not serve in time is given up (master_reload.c). Signals
 * are read from a signalfd in one poll loop together with the workers' "ready" pipes; timers
 * (respawn backoff, the watchdog, the stop deadline, the look at the workers' heartbeats, a
 * reload's or a detached start's deadline) are that loop's timeout. The workers' records, their
 * backoff and the judgements over them (a hung worker, a complete set) are roster.c's. The metrics
 * segment hears of the generation, of how many of its workers serve, of whether every slot has a
 * serving worker of any generation (GET /readyz reads it), and of every restart.
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
#include "detach.h"
#include "ratelimit.h"
#include "leakcheck.h"
#include "listen.h"
#include "log.h"
#include "master_state.h"
#include "metrics.h"
#include "notify.h"
#include "plural.h"
#include "revocation_shm.h"
#include "roster.h"
#include "scoreboard.h"
#include "worker.h"

#define HANG_CHECK_MS 250 /* how often the heartbeats are looked at */

struct master_state master_state;
static struct master_state *const m = &master_state;

/* ---- sockets ---- */

int master_open_sockets(const struct config *cfg, bool listening)
{
	return listen_set_open(&m->socks, cfg->listen, cfg->nlisten, cfg->workers, listening);
}

/* Is the address text among cfg's? Sockets systemd passed serve every configuration. */
static bool wants_address(const struct config *cfg, const char *text)
{
	if (m->socks.inherited)
		return true;
	for (size_t i = 0; i < cfg->nlisten; i++) {
		if (strcmp(cfg->listen[i], text) == 0)
			return true;
	}
	return false;
}

/* ---- workers ---- */

/* The configuration generation gen runs: the serving one's, or a reload's. */
static const struct config *config_of(unsigned gen)
{
	return m->next != NULL && gen == m->next_gen ? m->next : m->cfg;
}

/*
 * The sockets generation gen may have: during a reload the serving generation keeps those it
 * had, so that it holds none that an abandoned reload closes again.
 */
static size_t socks_of(unsigned gen)
{
	return m->next != NULL && gen != m->next_gen ? m->socks_before : m->socks.n;
}

/*
 * In a process forked from the master: closes what is the master's alone, but the sockets
 * that the worker of slot of generation gen serves (none when slot < 0), which go to fds;
 * returns how many.
 */
static size_t shed_master_fds(int slot, unsigned gen, int *fds)
{
	size_t n = 0, mine = slot >= 0 ? socks_of(gen) : 0;
	const struct config *cfg = config_of(gen);
	close(m->sigfd);
	for (size_t i = 0; i < m->socks.n; i++) {
		const struct listen_sock *s = &m->socks.socks[i];
		if (i < mine && listen_sock_serves(s, slot, cfg->workers) &&
		    wants_address(cfg, s->text))
			fds[n++] = s->fd;
		else
			close(s->fd);
	}
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		if (roster_at(i)->pid != 0 && roster_at(i)->ready_fd >= 0)
			close(roster_at(i)->ready_fd);
	}
	if (m->parent_fd >= 0)
		close(m->parent_fd);
	if (m->mig.fd >= 0)
		close(m->mig.fd);
	if (m->control_fd >= 0)
		close(m->control_fd);
	return n;
}

void master_shed_fds(void)
{
	shed_master_fds(-1, m->gen, NULL);
}

static void child_main(int rec, unsigned gen, int slot, int ready_fd, pid_t master)
{
	int *fds = calloc(m->socks.n + 1, sizeof(int));
	if (fds == NULL)
		_exit(1);
	size_t nfds = shed_master_fds(slot, gen, fds);
	metrics_worker_bind((size_t)rec);
	struct worker_spec spec = {.cfg = config_of(gen),
				   .fds = fds,
				   .nfds = nfds,
				   .ready_fd = ready_fd,
				   .slot = &m->sb[rec],
				   .master = master};
	int status = worker_run(&spec);
	free(fds);
	leakcheck_exit(status);
}

static int spawn(unsigned gen, int slot)
{
	int rec = roster_free_record();
	int pipefd[2];
	if (rec < 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
		log_error("cannot start a worker for slot %d: %s", slot,
			  rec < 0 ? "too many workers" : strerror(errno));
		return -1;
	}
	memset(&m->sb[rec], 0, sizeof(m->sb[rec]));
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
		child_main(rec, gen, slot, pipefd[1], master);
	}
	close(pipefd[1]);
	*roster_at(rec) = (struct roster_worker){.pid = pid,
						 .slot = slot,
						 .gen = gen,
						 .ready_fd = pipefd[0],
						 .started_ms = clock_mono_ms()};
	log_debug("worker %ld of generation %u started for slot %d", (long)pid, gen, slot);
	return 0;
}

void master_spawn_generation(unsigned gen)
{
	int slots = config_of(gen)->workers;
	roster_gen_begin(gen, slots);
	for (int slot = 0; slot < slots; slot++) {
		if (spawn(gen, slot) != 0)
			roster_respawn_at(gen, slot, clock_mono_ms() + 1000);
	}
	master_publish_workers();
}

/*
 * The metrics segment's view of the workers: the serving generation's size and who of it
 * serves, and whether the node's worker set is complete (GET /readyz). The slots are the
 * serving generation's: those a reload adds take no connection before their workers serve.
 */
void master_publish_workers(void)
{
	metrics_workers(m->gen, m->cfg->workers, roster_serving(m->gen),
			roster_complete(m->cfg->workers, m->socks.inherited));
}

/*
 * Each worker told to drain (SIGTERM) gets server.shutdown_timeout, which it enforces itself,
 * and a few seconds more before the master kills it: a worker stuck in C code or a finalizer
 * cannot outlive a reload or a stop.
 */
uint64_t master_retire_deadline(const struct config *cfg)
{
	return clock_mono_ms() + (uint64_t)cfg->shutdown_timeout * 1000u + 5000u;
}

void master_announce_ready(void)
{
	char status[160];
	bool passed = m->socks.inherited; /* socket activation: systemd's addresses, not ours */
	snprintf(status, sizeof(status), "serving on %s%s with %d %s",
		 passed ? m->socks.socks[0].text : m->cfg->listen[0],
		 (passed ? m->socks.n : m->cfg->nlisten) > 1 ? " and more" : "", m->cfg->workers,
		 plural(m->cfg->workers, "worker", "workers"));
	if (m->gen == 1)
		log_info("%s", status);
	else
		log_info("reloaded %s (generation %u); %s", m->cfg->path, m->gen, status);
	notify_ready(status);
	m->announced = true;
	detach_tell(&m->parent_fd, 'R', "");
}

/* Once every slot of the first generation serves, sesamed is ready; a reload's: see there. */
static void check_generation_ready(void)
{
	if (m->stopping)
		return;
	if (m->next != NULL) {
		master_reload_check_ready();
		return;
	}
	if (m->announced || roster_serving(m->gen) < m->cfg->workers)
		return;
	master_announce_ready();
	master_reload_deferred();
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
		master_publish_workers();
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

/* Every worker drains, and sesamed exits once they are gone. */
static void stop_all(void)
{
	m->stopping = true;
	notify_stopping();
	roster_retire(ROSTER_ALL, m->gen, master_retire_deadline(m->cfg));
	master_reload_stop();
}

/* The first generation did not start: sesamed stops, with status 1, and says why. */
static void start_failed(const char *why)
{
	log_error("%s; stopping", why);
	detach_tell(&m->parent_fd, 'E', why);
	m->start_failed = true;
	stop_all();
}

bool master_cannot_drop(int status, const char *what, char *why, size_t len)
{
	if (!WIFEXITED(status) || WEXITSTATUS(status) != WORKER_EXIT_PRIVS)
		return false;
	snprintf(why, len, "%s: it cannot run as server.user", what);
	return true;
}

/*
 * A worker of the first generation that cannot change to server.user: no respawn would do
 * better, so the start fails, clearly, rather than looping.
 */
static bool start_cannot_drop(int status, const char *what)
{
	char why[LOG_ERR_MAX];
	if (m->gen != 1 || m->announced || !master_cannot_drop(status, what, why, sizeof(why)))
		return false;
	start_failed(why);
	return true;
}

/* A worker died that no stop asked for: its generation replaces it, at once or later. */
static void worker_died(const struct roster_worker *w, int status, const char *what)
{
	if (start_cannot_drop(status, what) || master_reload_worker_failed(w, status, what) ||
	    !roster_gen_live(w->gen))
		return;
	uint64_t delay = roster_backoff(w->gen, w->slot, clock_mono_ms() - w->started_ms, what);
	metrics_restart(w->hung		      ? METRICS_RESTART_HANG
			: WIFSIGNALED(status) ? METRICS_RESTART_CRASH
					      : METRICS_RESTART_EXIT);
	if (delay)
		log_error("%s; it keeps dying: respawning in %llu ms", what,
			  (unsigned long long)delay);
	else
		log_error("%s; respawning", what);
}

static void reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (m->mig.pid != 0 && pid == m->mig.pid) {
			master_reload_migrated(status);
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
		describe_exit(&w, status, m->sb[rec].route, what, sizeof(what));
		bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		if (w.retiring || m->stopping) {
			if (clean)
				log_debug("%s", what);
			else
				log_warn("%s", what);
			continue;
		}
		worker_died(&w, status, what);
	}
}

/* ---- signals ---- */

static void begin_stop(int sig)
{
	if (m->stopping)
		return;
	log_info("%s: stopping once in-flight requests are done", strsignal(sig));
	stop_all();
}

static void handle_signal(void)
{
	struct signalfd_siginfo si;
	while (read(m->sigfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			reap();
			break;
		case SIGHUP:
			if (!m->stopping)
				master_reload();
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
			 (double)(clock_mono_ms() - m->started_ms) / 1000.0, "generation",
			 (json_int_t)m->gen, "workers_wanted", m->cfg->workers, "config",
			 m->cfg->path, "version", PACKAGE_VERSION, "revocation_fetcher",
			 (json_int_t)revocation_shm_holder(revocation_shm_node()), "workers",
			 workers);
}

static void on_control(void)
{
	json_t *doc = status_doc();
	control_answer(m->control_fd, doc);
	json_decref(doc);
}

/* ---- the loop ---- */

/* The deadline a detached start or a reload waits on now; UINT64_MAX when none. */
static uint64_t start_deadline(void)
{
	if (m->stopping) /* a stop ends a reload's wait and a start's */
		return UINT64_MAX;
	if (m->next != NULL)
		return m->reload_deadline;
	if (m->parent_fd >= 0 && !m->announced)
		return m->start_deadline;
	return UINT64_MAX;
}

static int next_timeout(void)
{
	uint64_t now = clock_mono_ms();
	/* A stop respawns nothing: a respawn due would make poll spin until the workers are gone.
	 */
	uint64_t next = m->stopping ? UINT64_MAX : roster_next_respawn();
	uint64_t kill_at = roster_next_kill();
	if (kill_at < next)
		next = kill_at;
	if (start_deadline() < next)
		next = start_deadline();
	if (m->watchdog_ms && m->next_watchdog < next)
		next = m->next_watchdog;
	if (roster_alive() > 0 && m->next_hang_check < next)
		next = m->next_hang_check;
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now);
}

/* A detached start whose workers did not all serve within server.start_timeout. */
static void check_start_deadline(uint64_t now)
{
	if (m->next != NULL || m->parent_fd < 0 || m->announced || m->stopping ||
	    now < m->start_deadline)
		return;
	char unready[LOG_ERR_MAX / 2], why[LOG_ERR_MAX];
	roster_gen_unready(m->gen, unready, sizeof(unready));
	snprintf(why, sizeof(why), "workers did not become ready within %g s: %s",
		 (double)m->cfg->start_timeout_ms / 1000.0, unready);
	start_failed(why);
}

static void tick(void)
{
	uint64_t now = clock_mono_ms();
	if (!m->stopping) {
		roster_respawn_due(now, spawn);
		master_reload_tick(now);
		check_start_deadline(now);
	}
	if (m->watchdog_ms && now >= m->next_watchdog) {
		if (roster_alive() > 0)
			notify_watchdog();
		m->next_watchdog = now + m->watchdog_ms / 2;
	}
	roster_kill_overdue(now);
	master_publish_workers();
	if (now >= m->next_hang_check) {
		roster_kill_hung(now, m->sb, m->cfg->hang_timeout_ms);
		m->next_hang_check = now + HANG_CHECK_MS;
	}
}

static void loop(void)
{
	struct pollfd pfd[ROSTER_RECORDS + 2];
	int recs[ROSTER_RECORDS + 2];
	while (!m->stopping || roster_alive() > 0 || m->mig.pid != 0) {
		nfds_t n = 0;
		pfd[n++] = (struct pollfd){.fd = m->sigfd, .events = POLLIN};
		recs[n] = -1;
		pfd[n++] = (struct pollfd){.fd = m->control_fd, .events = POLLIN};
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

static void release(void)
{
	control_close(m->control_fd, m->control_path);
	free(m->control_path);
	listen_set_free(&m->socks);
	if (m->sigfd >= 0)
		close(m->sigfd);
	/* A waiting parent's pipe closes with the process: it returns once sesamed is gone. */
	scoreboard_free(m->sb, ROSTER_RECORDS);
	master_reload_free();
	config_free(m->cfg);
}

/* Everything that outlives reloads, made once before any worker. */
static int set_up(const struct config *cfg)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGQUIT);
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	m->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	m->sb = scoreboard_new(ROSTER_RECORDS);
	/* The rate-limit counters, the metrics and the revoked ids outlive reloads. */
	if (m->sigfd < 0 || m->sb == NULL || ratelimit_shared_init() != 0 ||
	    metrics_shared_init(ROSTER_RECORDS) != 0 ||
	    revocation_shm_init((size_t)cfg->jwt.revocation_capacity) != 0) {
		log_error("cannot set up the master: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int master_run(struct config *cfg, const struct master_opts *opts)
{
	int status = 1;
	memset(m, 0, sizeof(*m));
	m->cfg = cfg;
	m->opts = opts;
	m->gen = m->last_gen = 1;
	m->sigfd = -1;
	m->parent_fd = -1;
	m->mig.fd = -1;
	m->control_fd = -1;
	m->started_ms = clock_mono_ms();
	if (set_up(cfg) != 0 || activation_take(&m->socks) < 0 ||
	    master_open_sockets(cfg, true) != 0)
		goto done;
	if (!opts->foreground && detach_start(cfg, &m->parent_fd) != 0)
		goto done;
	m->start_deadline = clock_mono_ms() + (uint64_t)cfg->start_timeout_ms;
	if (cfg->control != NULL && (m->control_path = strdup(cfg->control)) != NULL)
		m->control_fd = control_open(m->control_path, &cfg->privs);
	m->watchdog_ms = notify_watchdog_usec() / 1000u;
	m->next_watchdog = clock_mono_ms();
	notify_status("starting workers");
	master_spawn_generation(m->gen);
	loop();
	status = m->start_failed ? 1 : 0;
	log_info("stopped");
done:
	release();
	return status;
}
