/*
 * master_reload.c: the master's reload, from SIGHUP until its generation serves or is given
 * up.
 *
 * A reload loads and checks the configuration on the master's loop, then applies its schema in
 * a child process (cycle.c), whose exit is reaped like a worker's, so that a slow database
 * never stops the loop from feeding the watchdog. Then it opens the sockets the new
 * configuration adds and starts a new generation of workers, which has server.start_timeout
 * to serve in full. Meanwhile the serving generation keeps its configuration, its sockets and
 * its slots: a worker of either generation that dies is replaced with its own configuration,
 * with backoff. Once every new worker serves, the new generation serves and the older ones
 * drain. Past the deadline, or at once when a new worker cannot run as server.user, the reload
 * is given up: the new workers drain (and are killed if they do not stop), the sockets only
 * they opened close, systemd hears READY=1 with the reason, and the log says which slots
 * never served and how their last workers died. A SIGHUP that comes while a reload is under
 * way starts another once it ends, either way; one that comes before the first generation
 * serves waits for it, so that the first READY=1 and a detached start's verdict are that
 * generation's. The sockets a reload adds are bound but do not listen until the worker given
 * each is about to serve: the kernel routes no connection to them before, so that a reload
 * given up strands and resets none.
 */
#include "autoconfig.h"

#include <signal.h>
#include <stdio.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "master.h"
#include "master_state.h"
#include "metrics.h"
#include "notify.h"
#include "revocation_shm.h"
#include "roster.h"

static struct master_state *const m = &master_state;

/* A reload ended, one way or the other: one asked for meanwhile starts now. */
static void reload_ended(void)
{
	if (m->reload_again && !m->stopping) {
		m->reload_again = false;
		master_reload();
	}
}

static void reload_failed(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		log_error("%s", errs->msg[i]);
	config_errors_free(errs);
	config_free(m->pending);
	m->pending = NULL;
	if (m->stopping) {
		log_info("reload abandoned: stopping");
		return;
	}
	log_error("reload failed: still serving the previous configuration");
	metrics_reload(METRICS_RELOAD_INVALID);
	notify_ready("reload failed: serving the previous configuration");
}

/* The new configuration is checked and its schema applied: a new generation starts on it. */
static void reload_commit(void)
{
	size_t before = m->socks.n;
	/* The sockets it adds take no connection before their workers serve: none is stranded. */
	if (master_open_sockets(m->pending, false) != 0) {
		struct config_errors errs = {0};
		/* The open cleared the wanted marks: the running configuration keeps its own. */
		master_open_sockets(m->cfg, true);
		reload_failed(&errs);
		return;
	}
	log_set_level(m->pending->log_level);
	if ((size_t)m->pending->jwt.revocation_capacity !=
	    revocation_shm_capacity(revocation_shm_node()))
		log_warn("jwt.revocation_capacity: the node's set keeps its size (%zu ids) until "
			 "sesamed restarts",
			 revocation_shm_capacity(revocation_shm_node()));
	m->next = m->pending;
	m->pending = NULL;
	m->next_gen = ++m->last_gen;
	m->socks_before = before;
	m->reload_deadline = clock_mono_ms() + (uint64_t)m->next->start_timeout_ms;
	master_spawn_generation(m->next_gen);
}

/*
 * The reload's generation is given up: its workers drain, the sockets only it opened close,
 * and the serving generation goes on as if the reload had never been.
 */
static void give_up(const char *why)
{
	log_error("reload failed: %s; still serving generation %u (%s)", why, m->gen, m->cfg->path);
	char status[LOG_ERR_MAX];
	snprintf(status, sizeof(status), "reload failed: %s", why);
	roster_retire(ROSTER_GEN, m->next_gen, master_retire_deadline(m->next));
	roster_gen_end(m->next_gen);
	config_free(m->next);
	m->next = NULL;
	listen_set_truncate(&m->socks, m->socks_before);
	/* Nothing left to open: this marks the serving configuration's sockets wanted again. */
	master_open_sockets(m->cfg, true);
	log_set_level(m->cfg->log_level);
	master_publish_workers();
	metrics_reload(METRICS_RELOAD_FAILED);
	if (m->announced) /* never a READY=1 before the first generation's */
		notify_ready(status);
	reload_ended();
}

void master_reload_check_ready(void)
{
	if (m->next == NULL || roster_serving(m->next_gen) < m->next->workers)
		return;
	/* The older workers drain with their own configuration's server.shutdown_timeout. */
	uint64_t deadline = master_retire_deadline(m->cfg);
	roster_gen_end(m->gen);
	config_free(m->cfg);
	m->cfg = m->next;
	m->gen = m->next_gen;
	m->next = NULL;
	roster_retire(ROSTER_OTHER_GENS, m->gen, deadline);
	listen_set_close_unwanted(&m->socks);
	master_publish_workers();
	metrics_reload(METRICS_RELOAD_OK);
	master_announce_ready();
	reload_ended();
}

bool master_reload_worker_failed(const struct roster_worker *w, int status, const char *what)
{
	char why[LOG_ERR_MAX];
	if (m->next == NULL || w->gen != m->next_gen ||
	    !master_cannot_drop(status, what, why, sizeof(why)))
		return false;
	give_up(why);
	return true;
}

void master_reload_tick(uint64_t now)
{
	if (m->next == NULL || now < m->reload_deadline)
		return;
	char unready[LOG_ERR_MAX / 2], why[LOG_ERR_MAX];
	roster_gen_unready(m->next_gen, unready, sizeof(unready));
	snprintf(why, sizeof(why),
		 "generation %u did not become ready within %g s (server.start_timeout): %s",
		 m->next_gen, (double)m->next->start_timeout_ms / 1000.0, unready);
	give_up(why);
}

/* The new configuration's schema is in place. */
static void schema_applied(void)
{
	if (m->stopping) {
		config_free(m->pending);
		m->pending = NULL;
	} else {
		reload_commit();
		if (m->next != NULL)
			return; /* it ends when its generation serves, or is given up */
	}
	reload_ended();
}

void master_reload_migrated(int status)
{
	struct config_errors errs = {0};
	if (cycle_migrate_finish(&m->mig, status, &errs) == 0) {
		schema_applied();
		return;
	}
	reload_failed(&errs);
	reload_ended();
}

/* The reload's schema child: signals as a plain process gets them, none of the master's fds. */
static void migration_child(void)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	master_shed_fds();
}

/*
 * Loads and checks the configuration here; its schema is applied by a child, whose exit
 * (reaped like a worker's) carries the reload on, so that this loop keeps turning meanwhile.
 */
void master_reload(void)
{
	if (!m->announced) {
		/* Its READY=1 and a detached start's verdict belong to the first generation. */
		log_info("reload asked for before the workers serve: reloading once they do");
		m->reload_again = true;
		return;
	}
	if (m->pending != NULL || m->next != NULL) {
		log_info("reload asked for while one is under way: reloading again after it");
		m->reload_again = true;
		return;
	}
	struct config_errors errs = {0};
	notify_reloading();
	log_info("reloading %s", m->cfg->path);
	m->pending = cycle_load(m->cfg->path, m->opts->workers, &errs);
	if (m->pending == NULL ||
	    cycle_migrate_start(m->pending, &m->mig, migration_child, &errs) != 0) {
		reload_failed(&errs);
		return;
	}
	config_errors_free(&errs);
	if (m->mig.pid == 0)
		schema_applied();
}

void master_reload_deferred(void)
{
	reload_ended();
}

void master_reload_stop(void)
{
	/* A schema child is not waited for: its transaction is the database's to undo. */
	if (m->mig.pid != 0)
		kill(m->mig.pid, SIGTERM);
}

void master_reload_free(void)
{
	config_free(m->pending);
	m->pending = NULL;
	config_free(m->next);
	m->next = NULL;
}
