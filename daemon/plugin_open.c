/*
 * plugin_open.c: opens a plugin with dlopen and checks its descriptor.
 *
 * Nothing in a plugin runs before its descriptor has passed every check: the exported
 * symbol's size (from the ELF symbol table, so a truncated descriptor is caught before it is
 * read), the magic, the ABI major and minor, the kind and its table size, the name against
 * the file name, and the functions the kind requires. A plugin that fails any of them is
 * refused with a message naming the file, what it was built for and what is needed.
 */
#include "autoconfig.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "plugin_private.h"

/* ---- checking a descriptor ---- */

static const char *kind_name(uint32_t kind)
{
	switch (kind) {
	case SESAME_PLUGIN_VALIDATOR:
		return "validator";
	case SESAME_PLUGIN_HASHER:
		return "hasher";
	case SESAME_PLUGIN_STORAGE:
		return "storage";
	default:
		return NULL;
	}
}

/* The descriptor size a kind needs, or 0 for a kind this sesamed cannot load. */
static size_t kind_size(uint32_t kind)
{
	switch (kind) {
	case SESAME_PLUGIN_VALIDATOR:
		return sizeof(struct sesame_validator);
	case SESAME_PLUGIN_HASHER:
		return sizeof(struct sesame_hasher);
	case SESAME_PLUGIN_STORAGE:
		return sizeof(struct sesame_storage);
	default:
		return 0;
	}
}

static bool functions_present(const struct sesame_plugin_header *h)
{
	if (h->kind == SESAME_PLUGIN_VALIDATOR) {
		const struct sesame_validator *v = (const void *)h;
		return v->init && v->fini && v->check;
	}
	if (h->kind == SESAME_PLUGIN_STORAGE) {
		const struct sesame_storage *st = (const void *)h;
		return st->init && st->fini && st->migrate && st->worker_start && st->worker_stop &&
		       st->user_create && st->user_find && st->user_set_password &&
		       st->family_create && st->family_rotate && st->token_revoke &&
		       st->revoked_since && st->subject_revoke && st->token_purge &&
		       st->failure_check && st->failure_record && st->failure_reset && st->ping;
	}
	const struct sesame_hasher *x = (const void *)h;
	return x->init && x->fini && x->hash && x->verify && x->identify && x->needs_rehash;
}

static char *name_of_file(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	size_t len = strlen(base);
	if (len > 3 && strcmp(base + len - 3, ".so") == 0)
		len -= 3;
	return strndup(base, len);
}

/* Checks the descriptor at sym; returns 0, or -1 with the reason in why. */
static int check_descriptor(struct plugin *pl, const void *sym, char *why, size_t len)
{
	Dl_info info;
	const ElfW(Sym) *esym = NULL;
	size_t have = 0;
	if (dladdr1(sym, &info, (void **)&esym, RTLD_DL_SYMENT) != 0 && esym != NULL)
		have = esym->st_size;
	if (have < sizeof(struct sesame_plugin_header)) {
		snprintf(why, len,
			 "its descriptor is truncated (%zu bytes; the header alone is %zu)", have,
			 sizeof(struct sesame_plugin_header));
		return -1;
	}
	const struct sesame_plugin_header *h = sym;
	if (h->magic != SESAME_PLUGIN_MAGIC) {
		snprintf(why, len, "it is not a sesame plugin (magic 0x%08x, not 0x%08x)",
			 (unsigned)h->magic, SESAME_PLUGIN_MAGIC);
		return -1;
	}
	if (h->abi_major != SESAME_PLUGIN_ABI_MAJOR || h->abi_minor > SESAME_PLUGIN_ABI_MINOR) {
		snprintf(why, len,
			 "it was built for sesame plugin ABI %u.%u; this sesamed loads ABI %d.0 "
			 "to %d.%d%s",
			 (unsigned)h->abi_major, (unsigned)h->abi_minor, SESAME_PLUGIN_ABI_MAJOR,
			 SESAME_PLUGIN_ABI_MAJOR, SESAME_PLUGIN_ABI_MINOR,
			 h->abi_major == SESAME_PLUGIN_ABI_MAJOR ? ": upgrade sesamed"
								 : ": rebuild the plugin");
		return -1;
	}
	size_t need = kind_size(h->kind);
	if (need == 0) {
		snprintf(why, len, "its kind %u (%s) is not one this sesamed loads",
			 (unsigned)h->kind, kind_name(h->kind) ? kind_name(h->kind) : "unknown");
		return -1;
	}
	if (h->size < need || have < need || have < h->size) {
		snprintf(
		    why, len,
		    "its %s descriptor is truncated (it says %u bytes, exports %zu; %zu needed)",
		    kind_name(h->kind), (unsigned)h->size, have, need);
		return -1;
	}
	if (h->name == NULL || strcmp(h->name, pl->name) != 0) {
		snprintf(why, len, "it is named '%s', but its file is %s.so",
			 h->name ? h->name : "(none)", pl->name);
		return -1;
	}
	if (!functions_present(h)) {
		snprintf(why, len, "its %s descriptor lacks a required function",
			 kind_name(h->kind));
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
	pl->h = sym;
	return 0;
nomem:
	config_errors_add(ld->errs, "plugin %s: out of memory", path);
	return -1;
}
