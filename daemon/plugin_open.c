/*
 * plugin_open.c: opens a plugin with dlopen and checks its descriptor.
 *
 * Nothing in a plugin runs before its descriptor has passed every check: the exported
 * symbol's size (from the ELF symbol table, so a truncated descriptor is caught before it is
 * read), then the magic, the ABI, the kind, the size and the functions its minor requires
 * (plugin_abi.c), and the name against the file name. A plugin that fails any of them is
 * refused with a message naming the file, what it was built for and what is needed. The
 * rest of the core uses the loader's copy of the descriptor, never the plugin's own.
 */
#include "autoconfig.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "plugin_private.h"

static char *name_of_file(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	size_t len = strlen(base);
	if (len > 3 && strcmp(base + len - 3, ".so") == 0)
		len -= 3;
	return strndup(base, len);
}

/*
 * Checks the descriptor at sym; returns 0 with the core's copy in pl->h, or -1 with the
 * reason in why. The bytes that may be read are the exported symbol's size, from the ELF
 * symbol table.
 */
static int check_descriptor(struct plugin *pl, const void *sym, char *why, size_t len)
{
	Dl_info info;
	const ElfW(Sym) *esym = NULL;
	size_t have = 0;
	void *copy;
	if (dladdr1(sym, &info, (void **)&esym, RTLD_DL_SYMENT) != 0 && esym != NULL)
		have = esym->st_size;
	if (plugin_abi_check(plugin_kinds, sym, have, &copy, why, len) != 0)
		return -1;
	pl->h = copy;
	if (pl->h->name == NULL || strcmp(pl->h->name, pl->name) != 0) {
		snprintf(why, len, "it is named '%s', but its file is %s.so",
			 pl->h->name ? pl->h->name : "(none)", pl->name);
		return -1;
	}
	return 0;
}

int plugin_open(struct loading *ld, struct plugin *pl, const char *path)
{
	char why[LOG_ERR_MAX];
	pl->path = strdup(path);
	pl->name = name_of_file(path);
	if (pl->path == NULL || pl->name == NULL)
		goto nomem;
	host_init(pl, ld->dir);
	pl->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (pl->handle == NULL) {
		config_errors_add(ld->errs, "plugin %s: cannot be loaded: %s", path, dlerror());
		return -1;
	}
	const void *sym = dlsym(pl->handle, SESAME_PLUGIN_SYMBOL);
	if (sym == NULL) {
		config_errors_add(ld->errs, "plugin %s: it exports no %s descriptor", path,
				  SESAME_PLUGIN_SYMBOL);
		return -1;
	}
	if (check_descriptor(pl, sym, why, sizeof(why)) != 0) {
		config_errors_add(ld->errs, "plugin %s: refused: %s", path, why);
		return -1;
	}
	return 0;
nomem:
	config_errors_add(ld->errs, "plugin %s: out of memory", path);
	return -1;
}
