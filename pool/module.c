/*
 * The task registry: modules (the built-in one and dlopen()ed ones), their
 * hooks, and the table that maps a task name to its function.
 *
 * The registry is built in the master before any worker forks; workers
 * inherit it and only read it (apart from their own worker_inited flags), so
 * nothing here locks.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "module.h"

/* Task names end up in URLs, logs and JSON keys: keep them short and plain. */
#define TASK_NAME_MAX 64

/* Big enough for "<64-char name> (built-in)"; see module_label(). */
#define LABEL_MAX 96

/*
 * How errors name a module: its file when it has one, since that is what the
 * operator typed and can fix; a built-in one has only its name.
 */
static const char *module_label(const char *path, const struct fp_module *def,
				char buf[LABEL_MAX])
{
	if (path)
		return path;
	snprintf(buf, LABEL_MAX, "%.64s (built-in)",
		 def && def->name ? def->name : "unnamed");
	return buf;
}

static const char *registered_label(const struct fp_registry_module *m,
				    char buf[LABEL_MAX])
{
	return module_label(m->handle ? m->path : NULL, m->def, buf);
}

void fp_registry_init(struct fp_registry *reg)
{
	memset(reg, 0, sizeof(*reg));
}

static int task_name_valid(const char *name)
{
	size_t i;

	for (i = 0; name[i]; i++) {
		unsigned char c = (unsigned char)name[i];

		/* Spelled out rather than isalnum(): that one follows the locale. */
		if (i >= TASK_NAME_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return i > 0;
}

/*
 * A printable copy of a name that failed validation: it may hold control
 * characters or be arbitrarily long, and it is going into a log line.
 */
static void printable_name(char *out, size_t outlen, const char *name)
{
	size_t i, o = 0;

	for (i = 0; name[i] && o + 4 < outlen; i++) {
		unsigned char c = (unsigned char)name[i];

		out[o++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
	}
	if (name[i]) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

static int task_cmp(const void *a, const void *b)
{
	const struct fp_registry_task *x = a, *y = b;

	return strcmp(x->name, y->name);
}

static int task_key_cmp(const void *key, const void *elem)
{
	const struct fp_registry_task *t = elem;

	return strcmp(key, t->name);
}

/* Whether task `name` is in the module's generator list (ABI 2 on). */
static int is_generator(const struct fp_module *def, const char *name)
{
	size_t i;

	/* An ABI-1 descriptor ends before `generators`: never read it. */
	if (def->abi_version < 2 || !def->generators)
		return 0;
	for (i = 0; def->generators[i]; i++)
		if (strcmp(def->generators[i], name) == 0)
			return 1;
	return 0;
}

/* Every name in `generators` must be one of the module's own tasks. */
static int generators_check(const struct fp_module *def, size_t ntasks,
			    const char *label, char *errbuf, size_t errlen)
{
	char shown[TASK_NAME_MAX + 8];
	size_t i, j;

	if (def->abi_version < 2 || !def->generators)
		return 0;
	for (i = 0; def->generators[i]; i++) {
		for (j = 0; j < ntasks; j++)
			if (strcmp(def->tasks[j].name, def->generators[i]) == 0)
				break;
		if (j == ntasks) {
			printable_name(shown, sizeof(shown), def->generators[i]);
			return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
						 "module %s: generators names \"%s\", which is not in its task table",
						 label, shown);
		}
	}
	return 0;
}

/* Check the descriptor itself and count its tasks; FP_EMODULE with a message. */
static int module_check(const struct fp_module *def, const char *label,
			size_t *ntasks, char *errbuf, size_t errlen)
{
	char shown[TASK_NAME_MAX + 8];
	size_t i;

	if (def->abi_version < FP_TASK_ABI_MIN || def->abi_version > FP_TASK_ABI_VERSION) {
		return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
					 "module %s: built for ABI %u, this forkpool speaks ABI %d to %d "
					 "(rebuild it against this forkpool's forkpool/task.h)",
					 label, (unsigned)def->abi_version, FP_TASK_ABI_MIN,
					 FP_TASK_ABI_VERSION);
	}
	if (!def->tasks) {
		return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
					 "module %s: its task table is NULL", label);
	}
	for (i = 0; def->tasks[i].name; i++) {
		const struct fp_task *t = &def->tasks[i];

		if (!task_name_valid(t->name)) {
			printable_name(shown, sizeof(shown), t->name);
			return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
						 "module %s: task #%zu has an invalid name \"%s\" "
						 "(allowed: 1 to %d of [A-Za-z0-9_.-])", label,
						 i + 1, shown, TASK_NAME_MAX);
		}
		if (!t->fn) {
			return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
						 "module %s: task \"%s\" has no function (fn is NULL)",
						 label, t->name);
		}
	}
	if (i == 0) {
		return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
					 "module %s: its task table is empty (the first entry's name is NULL)",
					 label);
	}
	*ntasks = i;
	return generators_check(def, i, label, errbuf, errlen);
}

/*
 * The registry's tasks plus the new module's, sorted, in a new array; fails
 * on a name that appears twice. The old array is left alone so that a
 * failure changes nothing.
 */
static int tasks_merge(const struct fp_registry *reg, const struct fp_module *def,
		       size_t n, const char *label, struct fp_registry_task **out,
		       char *errbuf, size_t errlen)
{
	unsigned idx = (unsigned)reg->nmodules;
	struct fp_registry_task *all;
	char other[LABEL_MAX];
	size_t i, total = reg->ntasks + n;

	all = malloc(total * sizeof(*all));
	if (!all)
		return -ENOMEM;
	if (reg->ntasks)
		memcpy(all, reg->tasks, reg->ntasks * sizeof(*all));
	for (i = 0; i < n; i++) {
		all[reg->ntasks + i] = (struct fp_registry_task){
			.name = def->tasks[i].name,
			.fn = def->tasks[i].fn,
			.doc = def->tasks[i].doc,
			.module = idx,
			.generator = is_generator(def, def->tasks[i].name),
		};
	}
	qsort(all, total, sizeof(*all), task_cmp);

	for (i = 1; i < total; i++) {
		const struct fp_registry_task *a = &all[i - 1], *b = &all[i];

		if (strcmp(a->name, b->name) != 0)
			continue;
		/* The registry had no duplicates, so one of the pair is new. */
		if (a->module == idx && b->module == idx) {
			fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
					  "module %s: task \"%s\" is defined twice in its task table",
					  label, a->name);
		} else {
			const struct fp_registry_task *old = a->module == idx ? b : a;

			fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
					  "module %s: task \"%s\" is already defined by module %s",
					  label, a->name,
					  registered_label(&reg->modules[old->module], other));
		}
		free(all);
		return FP_EMODULE;
	}
	*out = all;
	return 0;
}

/*
 * A private copy of the file, to dlopen() as an object of its own: the
 * dynamic loader hands back the already open object for a file it has open,
 * so reloading a module in place would change nothing. The copy lives in a
 * memfd, loaded as "/proc/self/fd/N". The fd stays open while the object is
 * loaded: the loader also recognises an object by the name it was opened
 * with, so a later copy given the same fd number would be taken for this one
 * and the old code handed back as the new.
 */
static int copy_to_memfd(const char *path, char *errbuf, size_t errlen)
{
	int in = open(path, O_RDONLY | O_CLOEXEC), out;
	struct stat st;
	off_t off = 0;

	if (in < 0) {
		return fp_errbuf_printf(errbuf, errlen, -1, "module %s: cannot open: %s", path,
					 strerror(errno));
	}
	out = memfd_create("forkpool-module", MFD_CLOEXEC);
	if (out < 0 || fstat(in, &st) < 0) {
		fp_errbuf_printf(errbuf, errlen, -1, "module %s: cannot copy for reloading: %s",
				  path, strerror(errno));
		goto fail;
	}
	while (off < st.st_size) {
		ssize_t n = sendfile(out, in, &off, (size_t)(st.st_size - off));
		if (n <= 0) {
			fp_errbuf_printf(errbuf, errlen, -1,
					  "module %s: cannot copy for reloading: %s", path,
					  n < 0 ? strerror(errno) : "file shrank");
			goto fail;
		}
	}
	close(in);
	return out;
fail:
	if (out >= 0)
		close(out);
	close(in);
	return -1;
}

static int registry_add(struct fp_registry *reg, const char *path, bool fresh,
			const struct fp_module *def, char *errbuf, size_t errlen);

int fp_registry_add(struct fp_registry *reg, const char *path,
		    const struct fp_module *def, char *errbuf, size_t errlen)
{
	return registry_add(reg, path, false, def, errbuf, errlen);
}

int fp_registry_reload(struct fp_registry *reg, const struct fp_registry *old,
		       char *errbuf, size_t errlen)
{
	int rc = 0;

	fp_registry_init(reg);
	for (size_t i = 0; !rc && i < old->nmodules; i++) {
		const struct fp_registry_module *m = &old->modules[i];
		rc = m->handle ? registry_add(reg, m->path, true, NULL, errbuf, errlen)
			       : registry_add(reg, NULL, false, m->def, errbuf, errlen);
	}
	if (!rc)
		rc = fp_registry_load(reg, errbuf, errlen);
	if (rc)
		fp_registry_deinit(reg);
	return rc;
}

/*
 * A module file's descriptor: dlopen() it (a reload's fresh copy from a
 * memfd, so that a file changed in place is read anew) and find its
 * fp_module. What it opened is in *handle and *memfd, failure or not: the
 * caller closes them.
 */
static int module_open(const char *path, bool fresh, void **handle, int *memfd,
		       const struct fp_module **def, char *errbuf, size_t errlen)
{
	const char *err;

	/*
	 * RTLD_NOW: an unresolved symbol is reported here, naming the
	 * module, not as a crash in a worker at the first call.
	 * RTLD_LOCAL: two modules may define the same helper names.
	 */
	if (fresh) {
		char fdpath[64];
		*memfd = copy_to_memfd(path, errbuf, errlen);
		if (*memfd < 0)
			return FP_EMODULE;
		snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", *memfd);
		*handle = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
	} else {
		*handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	}
	if (!*handle) {
		err = dlerror();
		return fp_errbuf_printf(errbuf, errlen, FP_EMODULE, "module %s: cannot load: %s",
					path, err ? err : "unknown dlopen error");
	}
	dlerror();
	*def = dlsym(*handle, "fp_module");
	err = dlerror();
	if (!*def)
		return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
					"module %s: no `fp_module` symbol (%s); define it with "
					"FP_MODULE() from forkpool/task.h", path,
					err ? err : "it is NULL");
	return 0;
}

/*
 * dlopen() of a file already open returns the same handle, and a built-in
 * added twice is the same descriptor: say so, rather than report each of
 * its tasks as a duplicate of itself.
 */
static int module_duplicate(const struct fp_registry *reg, const struct fp_module *def,
			    const char *label, char *errbuf, size_t errlen)
{
	char other[LABEL_MAX];

	for (size_t i = 0; i < reg->nmodules; i++) {
		if (reg->modules[i].def != def)
			continue;
		const char *as = registered_label(&reg->modules[i], other);

		if (strcmp(as, label) == 0)
			return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
						"module %s: already loaded", label);
		return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
					"module %s: already loaded as module %s", label, as);
	}
	return 0;
}

/*
 * The module's entry and its tasks' info in reg, and `tasks` (the merged
 * table, tasks_merge()) as reg's; -ENOMEM leaves reg as it was, the caller
 * still owning tasks, handle and memfd.
 */
static int registry_insert(struct fp_registry *reg, const char *path,
			   const struct fp_module *def, void *handle, int memfd,
			   struct fp_registry_task *tasks, size_t n)
{
	struct fp_registry_module *modules;
	struct fp_task_info *info;
	char *pathcopy;

	pathcopy = strdup(path ? path : "(built-in)");
	if (!pathcopy)
		return -ENOMEM;
	/*
	 * Growing the arrays is harmless if a later step fails: the counts,
	 * which say what is in use, are only raised at the end.
	 */
	modules = realloc(reg->modules, (reg->nmodules + 1) * sizeof(*modules));
	if (!modules)
		goto err_path;
	reg->modules = modules;
	info = realloc(reg->info, (reg->ntasks + n) * sizeof(*info));
	if (!info)
		goto err_path;
	reg->info = info;

	modules[reg->nmodules] = (struct fp_registry_module){
		.def = def,
		.handle = handle,
		.memfd = memfd,
		.path = pathcopy,
		.name = def->name ? def->name : pathcopy,
	};
	for (size_t i = 0; i < n; i++) {
		info[reg->ntasks + i] = (struct fp_task_info){
			.name = def->tasks[i].name,
			.module = modules[reg->nmodules].name,
			.doc = def->tasks[i].doc,
			.generator = is_generator(def, def->tasks[i].name),
		};
	}
	free(reg->tasks);
	reg->tasks = tasks;
	reg->ntasks += n;
	reg->nmodules++;
	return 0;

err_path:
	free(pathcopy);
	return -ENOMEM;
}

static int registry_add(struct fp_registry *reg, const char *path, bool fresh,
			const struct fp_module *def, char *errbuf, size_t errlen)
{
	struct fp_registry_task *tasks = NULL;
	char labelbuf[LABEL_MAX];
	const char *label;
	void *handle = NULL;
	int memfd = -1;
	size_t n = 0;
	int rc;

	if (!path && !def) {
		return fp_errbuf_printf(errbuf, errlen, -EINVAL,
					 "module: neither a path nor a descriptor given");
	}
	/*
	 * dlopen() looks a name without a '/' up in the library path, never
	 * in the working directory, while a reload copies the file by the
	 * name as given (copy_to_memfd): the two could load different files,
	 * and "librev.so" in the working directory failed with "cannot open
	 * shared object file". A module is a path.
	 */
	if (path && !strchr(path, '/')) {
		return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
					 "module %s: not a path; write ./%s for the file in the"
					 " working directory (a name without a '/' would be looked"
					 " up in the system's library path)", path, path);
	}
	if (path && (rc = module_open(path, fresh, &handle, &memfd, &def, errbuf, errlen)) < 0)
		goto err_close;
	label = module_label(path, def, labelbuf);
	rc = module_duplicate(reg, def, label, errbuf, errlen);
	if (rc < 0)
		goto err_close;
	rc = module_check(def, label, &n, errbuf, errlen);
	if (rc < 0)
		goto err_close;
	rc = tasks_merge(reg, def, n, label, &tasks, errbuf, errlen);
	if (rc < 0)
		goto err_close;

	rc = registry_insert(reg, path, def, handle, memfd, tasks, n);
	if (rc < 0)
		goto err_tasks;
	return 0;

err_tasks:
	free(tasks);
err_close:
	if (handle)
		dlclose(handle);
	if (memfd >= 0)
		close(memfd);
	return rc;
}

/* A hook's failure, in words: hooks return a negative errno, but may not. */
static const char *hook_strerror(int rc, char *buf, size_t len)
{
	if (rc < 0)
		return fp_strerror(rc);
	snprintf(buf, len, "returned %d, not 0 or a negative errno", rc);
	return buf;
}

int fp_registry_load(struct fp_registry *reg, char *errbuf, size_t errlen)
{
	char labelbuf[LABEL_MAX], why[64];
	size_t i;
	int rc;

	for (i = 0; i < reg->nmodules; i++) {
		struct fp_registry_module *m = &reg->modules[i];

		if (m->loaded)
			continue;
		rc = m->def->load ? m->def->load() : 0;
		if (rc != 0) {
			return fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
						 "module %s: load hook failed: %s",
						 registered_label(m, labelbuf),
						 hook_strerror(rc, why, sizeof(why)));
		}
		m->loaded = 1;
	}
	return 0;
}

void fp_registry_deinit(struct fp_registry *reg)
{
	size_t i;

	/* Reverse order, like destructors: a later module may use an earlier one's state. */
	for (i = reg->nmodules; i-- > 0;) {
		struct fp_registry_module *m = &reg->modules[i];

		if (m->loaded && m->def->unload)
			m->def->unload();
		/* After unload: the hook's code lives in the object dlclose() unmaps. */
		if (m->handle)
			dlclose(m->handle);
		if (m->memfd >= 0)
			close(m->memfd);
		free(m->path);
	}
	free(reg->modules);
	free(reg->tasks);
	free(reg->info);
	memset(reg, 0, sizeof(*reg));
}

const struct fp_registry_task *fp_registry_find(const struct fp_registry *reg,
						const char *name)
{
	if (!reg->ntasks || !name)
		return NULL;
	return bsearch(name, reg->tasks, reg->ntasks, sizeof(*reg->tasks), task_key_cmp);
}

int fp_registry_worker_init(struct fp_registry *reg, char *errbuf, size_t errlen)
{
	char labelbuf[LABEL_MAX], why[64];
	size_t i;
	int rc;

	for (i = 0; i < reg->nmodules; i++) {
		struct fp_registry_module *m = &reg->modules[i];

		if (m->worker_inited)
			continue;
		rc = m->def->worker_init ? m->def->worker_init() : 0;
		if (rc != 0) {
			fp_errbuf_printf(errbuf, errlen, FP_EMODULE,
					  "module %s: worker_init failed: %s",
					  registered_label(m, labelbuf),
					  hook_strerror(rc, why, sizeof(why)));
			fp_registry_worker_fini(reg);
			return FP_EMODULE;
		}
		m->worker_inited = 1;
	}
	return 0;
}

void fp_registry_worker_fini(struct fp_registry *reg)
{
	size_t i;

	for (i = reg->nmodules; i-- > 0;) {
		struct fp_registry_module *m = &reg->modules[i];

		if (!m->worker_inited)
			continue;
		m->worker_inited = 0;
		if (m->def->worker_fini)
			m->def->worker_fini();
	}
}
