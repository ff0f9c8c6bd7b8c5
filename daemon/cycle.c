/*
 * cycle.c: the sequence that turns a configuration file into something the master can serve,
 * shared by sesamed's start and the master's reload, as nginx's init cycle serves both.
 *
 * Loading the file and the route scripts is local work and runs where it is called. Applying
 * the schema talks to the database, which may be slow or down: it runs in a child process
 * forked from the caller (the plugins' states are inherited, nothing is passed back but a
 * verdict), so that the master's loop keeps reaping workers and feeding systemd's watchdog
 * while it waits. The child writes the reason for a failure to a pipe and exits 1.
 */
#include "autoconfig.h"

#include "cycle.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dbpool.h"
#include "leakcheck.h"
#include "log.h"
#include "lua_api.h"
#include "plugin.h"
#include "plural.h"
#include "privs.h"

struct config *cycle_load(const char *path, int workers, struct config_errors *errs)
{
	struct config *cfg = config_load(path, errs);
	if (cfg == NULL)
		return NULL;
	if (workers > 0)
		config_set_workers(cfg, workers);
	char why[LOG_ERR_MAX];
	if (privs_check_root(&cfg->privs, why, sizeof(why)) != 0) {
		config_errors_add(errs, "%s: %s", cfg->path, why);
		config_free(cfg);
		return NULL;
	}
	if (luaapi_check(cfg, errs) != 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

int cycle_check(const char *path, int workers)
{
	struct config_errors errs = {0};
	struct config *cfg = cycle_load(path, workers, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	config_errors_free(&errs);
	if (cfg == NULL) {
		fprintf(stderr, "sesamed: %s: configuration has errors\n", path);
		return 1;
	}
	plugins_report(cfg->plugins, stdout);
	printf("sesamed: %s: configuration is ok (%zu %s)\n", path, cfg->nroutes,
	       plural((long long)cfg->nroutes, "route script", "route scripts"));
	config_free(cfg);
	return 0;
}

static _Noreturn void migrate_child(struct config *cfg, int fd)
{
	char err[LOG_ERR_MAX] = "";
	/*
	 * As server.user: the files the schema makes (an SQLite database) are the workers' to
	 * write. The child's own pool: the master itself never holds a connection across a fork.
	 */
	int rc = privs_drop(&cfg->privs, err, sizeof(err));
	if (rc == 0 && dbpool_start(plugins_pool(cfg->plugins)) != 0) {
		snprintf(err, sizeof(err), "out of memory");
		rc = -1;
	} else if (rc == 0) {
		rc = plugins_migrate(cfg->plugins, false, err, sizeof(err));
	}
	dbpool_stop();
	if (rc != 0) {
		size_t len = strlen(err);
		ssize_t n = write(fd, err, len > 0 ? len : 1);
		(void)n;
	}
	leakcheck_exit(rc == 0 ? 0 : 1);
}

int cycle_migrate_start(struct config *cfg, struct cycle_migration *mig, void (*in_child)(void),
			struct config_errors *errs)
{
	*mig = (struct cycle_migration){
	    .pid = 0, .fd = -1, .apply = plugins_applies_migrations(cfg->plugins)};
	if (!plugins_wants_migration(cfg->plugins))
		return 0;
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		goto fail;
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		goto fail;
	}
	if (pid == 0) {
		close(p[0]);
		if (in_child != NULL)
			in_child();
		migrate_child(cfg, p[1]);
	}
	close(p[1]);
	mig->pid = pid;
	mig->fd = p[0];
	return 0;
fail:
	config_errors_add(errs, "storage: cannot apply the schema: %s", strerror(errno));
	return -1;
}

int cycle_migrate_finish(struct cycle_migration *mig, int status, struct config_errors *errs)
{
	char why[LOG_ERR_MAX];
	ssize_t n = read(mig->fd, why, sizeof(why) - 1);
	bool apply = mig->apply;
	close(mig->fd);
	*mig = (struct cycle_migration){.pid = 0, .fd = -1};
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (n > 0) {
		why[n] = '\0';
	} else if (WIFSIGNALED(status)) {
		snprintf(why, sizeof(why), "the migration was killed by signal %d",
			 WTERMSIG(status));
	} else {
		snprintf(why, sizeof(why), "the migration exited with status %d",
			 WEXITSTATUS(status));
	}
	/* Only checked (storage.migrate = false): the plugin's reason says what to do. */
	config_errors_add(errs, apply ? "storage: cannot apply the schema: %s" : "storage: %s",
			  why);
	return -1;
}

int cycle_migrate(struct config *cfg, struct config_errors *errs)
{
	struct cycle_migration mig;
	if (cycle_migrate_start(cfg, &mig, NULL, errs) != 0)
		return -1;
	if (mig.pid == 0)
		return 0;
	int status;
	while (waitpid(mig.pid, &status, 0) < 0) {
		if (errno != EINTR) {
			status = -1;
			break;
		}
	}
	return cycle_migrate_finish(&mig, status, errs);
}
