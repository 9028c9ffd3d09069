/*
 * The set-up of a new process, between fork() (or the zygote's clone) and
 * its main function. Nothing here may return into the master's stack: the
 * callers end in a function that never returns.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "child.h"

pid_t fp__child_fork(void)
{
	sigset_t all, old;
	pid_t pid;
	int err;

	fflush(NULL);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		return 0;
	err = -errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pid < 0 ? err : pid;
}

/*
 * A terminal's Ctrl-C, Ctrl-\ and Ctrl-Z signal its whole foreground process
 * group, which is the master's: workers and the zygote that shared it died
 * of a SIGINT meant for the master, whose answer is to drain and so let
 * running tasks finish. So each new process leaves that group for one of
 * its own (a zygote's clones are born in the zygote's). We chose this over
 * ignoring those signals because a disposition of SIG_IGN survives exec: an
 * exec pool's program (a shell, Python's KeyboardInterrupt) and whatever a
 * task starts would inherit it, and a task that wants SIGINT would not get
 * it. Signals sent to the process itself, or its own group, still act as
 * before; the exec shim's group (pool/exec_worker.c) is then this one. The
 * master's death still takes every process with it (PDEATHSIG).
 *
 * Called with every signal blocked (fp__child_fork): one sent to the
 * master's group between the fork and setpgid() is pending here, and is
 * discarded by ignoring it, which POSIX says drops a pending signal.
 */
static void leave_masters_group(void)
{
	/* The keyboard's three, and a hangup's SIGHUP to the foreground group. */
	static const int terminal[] = { SIGINT, SIGQUIT, SIGTSTP, SIGHUP };
	size_t i;

	/* Only fails if we lead a session, which a forked child cannot. */
	(void)setpgid(0, 0);
	for (i = 0; i < sizeof(terminal) / sizeof(terminal[0]); i++)
		signal(terminal[i], SIG_IGN);
}

void fp__child_detach(pid_t master_pid)
{
	int sig, devnull;

	leave_masters_group();
	/* Handlers of an embedding program are not ours. */
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	/* Die with the master; if it died already, the parent is not it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != master_pid)
		_exit(FP_WORKER_EXIT_OK);

	devnull = open("/dev/null", O_RDONLY);
	if (devnull >= 0) {
		dup2(devnull, STDIN_FILENO);
		if (devnull > STDIN_FILENO)
			close(devnull);
	}
}

/*
 * Other workers' sockets, client connections of an embedding server, the
 * loop's fds, the zygote's socket: all close-on-exec. A module's load hook
 * may have opened files without that flag for its workers to share, and
 * those stay open. Without this, a connection the master closes would stay
 * open in every worker.
 */
void fp__child_close_cloexec(int keep)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int dfd;

	if (!d)
		return;
	dfd = dirfd(d);
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		int fl;

		if (fd < 3 || fd == keep || fd == dfd)
			continue;
		fl = fcntl(fd, F_GETFD);
		if (fl >= 0 && (fl & FD_CLOEXEC))
			close(fd);
	}
	closedir(d);
}

/* Fields 48 and 49 of /proc/self/stat bound the argument area. */
bool fp__child_title_area(struct fp_title_area *a)
{
	char stat[2048];
	char *p;
	int fd, i;
	ssize_t n;

	a->start = a->end = 0;
	fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, stat, sizeof(stat) - 1);
	close(fd);
	if (n <= 0)
		return false;
	stat[n] = '\0';
	/* Fields after the command name, which may hold spaces and ')'. */
	p = strrchr(stat, ')');
	if (!p)
		return false;
	p += 2;
	/* p is at field 3; arg_start is field 48. */
	for (i = 3; i < 48 && p; i++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p || sscanf(p, "%lu %lu", &a->start, &a->end) != 2 || a->end <= a->start + 1) {
		a->start = a->end = 0;
		return false;
	}
	return true;
}

/* Overwrite the argument area, which ps shows, and set comm for top. */
void fp__child_set_title(const struct fp_title_area *a, const char *title, const char *comm)
{
	size_t room, len;

	prctl(PR_SET_NAME, comm, 0, 0, 0);
	if (!a->end)
		return;
	room = a->end - a->start - 1;
	len = strlen(title);
	if (len > room)
		len = room;
	memcpy((char *)a->start, title, len);
	memset((char *)a->start + len, 0, a->end - a->start - len);
}

_Noreturn void fp__child_worker(const struct fp_child *c)
{
	const struct fp_zygote_child *z = c->zygote;
	struct fp_worker_args args = c->args;
	struct fp_title_area area;
	char title[64], comm[16];
	sigset_t none;
	int i;

	if (z) {
		args.shm = mmap(NULL, sizeof(*args.shm), PROT_READ | PROT_WRITE, MAP_SHARED,
				z->shm_fd, 0);
		if (args.shm == MAP_FAILED)
			_exit(FP_WORKER_EXIT_INIT);
		close(z->shm_fd);
	}
	/*
	 * First: if the zygote that cloned us dies before it tells the master
	 * our pid, the master finds it here (pool/zygote.c).
	 */
	atomic_store_explicit(&args.shm->pid, (int32_t)getpid(), memory_order_release);
	if (z) {
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (getppid() != c->master_pid)
			_exit(FP_WORKER_EXIT_OK);
	} else {
		fp__child_detach(c->master_pid);
	}
	dup2(c->log_fd, STDOUT_FILENO);
	dup2(c->log_fd, STDERR_FILENO);
	/* The zygote set this once: writing it again would copy libc's page. */
	if (!z)
		setvbuf(stdout, NULL, _IOLBF, 0);
	if (z) {
		for (i = 0; i < 2; i++)
			if (z->close_fds[i] > STDERR_FILENO)
				close(z->close_fds[i]);
		area = z->title;
	} else {
		fp__child_close_cloexec(args.fd);
		fp__child_title_area(&area);
	}
	snprintf(comm, sizeof(comm), "fp-worker-%u", args.slot);
	snprintf(title, sizeof(title), "forkpool: worker %u gen %llu", args.slot,
		 (unsigned long long)args.generation);
	fp__child_set_title(&area, title, comm);

	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	/* An exec pool's worker runs its program instead (pool/exec_worker.c). */
	if (args.exec)
		fp_exec_worker_main(&args);
	fp_worker_main(&args);
}
