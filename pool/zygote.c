/*
 * The fork server ("zygote"), both sides: the process that forks workers,
 * and the master's dealings with it (pool/zygote.h says why it exists).
 *
 * Protocol, over a SOCK_SEQPACKET socketpair: the master sends one request
 * per worker (slot, generation, task budget) with three fds (the worker's
 * end of its socketpair, the write end of its log pipe, the memfd of its
 * shared page); the zygote clones, closes its copies of the fds and answers
 * with the pid or -errno; the worker maps the page and writes its pid there
 * first thing.
 * Answers come in request order. The master never blocks: requests are sent
 * without waiting (a full socket means "fork directly"), answers are read
 * by the loop.
 *
 * When a zygote dies (killed, crashed, stalled and killed by us) the master
 * logs it and starts another; after three deaths less than a minute apart
 * it forks workers itself from then on. Requests it
 * left unanswered are settled from the shared pages: a worker writes its pid
 * there before anything else, so a page without a pid, once the worker's
 * socket has closed (the worker holds it), is a worker that was never made;
 * it is asked for again, not counted as a start failure.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "pool_impl.h"
#include "zygote.h"

#define ZYGOTE_MAGIC 0x7a79676fu   /* "zygo" */
/* An answer overdue by this much: the zygote is stuck; kill it. */
#define ZYGOTE_STALL_MS 5000
/*
 * Deaths, each within ZYGOTE_DEATH_WINDOW_MS of the one before, after which
 * workers are forked by the master itself.
 */
#define ZYGOTE_MAX_DEATHS 3
#define ZYGOTE_DEATH_WINDOW_MS 60000

struct zygote_req {
	uint32_t magic;
	uint32_t slot;
	uint64_t generation;
	uint64_t task_limit;
	uint32_t group;             /* the worker's group: its index in root->groups */
	uint32_t pad;
};

struct zygote_rep {
	uint32_t magic;
	int32_t pid;                /* or -errno */
	uint64_t generation;
	uint32_t slot;
	uint32_t pad;
};

struct fp_zygote {
	fp_pool *pool;
	struct fp_zygote *next;    /* pool->zygotes */
	pid_t pid;
	int fd;                    /* master's end, SOCK_SEQPACKET */
	fp_io rio;
	fp_timer stall;
	struct fp_worker *head, *tail;   /* asked, not answered, in order */
	char rbuf[sizeof(struct zygote_rep)];
	size_t rlen;
	bool retired;              /* asked nothing more; exits after answering */
	bool dead;                 /* its socket ended */
	bool killed;               /* SIGKILLed by us while it was alive */
	bool reaped;
	bool in_cb;                /* its read callback runs: not to be freed */
	int status;
};

/* --- in the zygote ------------------------------------------------------- */

/* clone3()'s argument, as the kernel's struct clone_args (version 0, 64 bytes). */
struct clone3_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

/*
 * fork(), but the child's parent is our parent, the master. With ctid (the
 * calling thread's tid field in glibc's thread descriptor, as
 * PR_GET_TID_ADDRESS reports it) the kernel writes the child's tid there, as
 * glibc's own fork() does, so that whatever glibc reads from the descriptor
 * names the child, not us.
 */
static pid_t clone_parent(int *ctid)
{
	uint64_t flags = CLONE_PARENT;
	long r;

	if (ctid)
		flags |= CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
#ifdef SYS_clone3
	/* With CLONE_PARENT the exit signal is the caller's own: clone3 wants 0. */
	struct clone3_args a = { .flags = flags, .child_tid = (uintptr_t)ctid };
	r = syscall(SYS_clone3, &a, sizeof(a));
	if (r >= 0 || errno != ENOSYS)
		return (pid_t)r;
#endif
	/*
	 * Old kernels, or a seccomp filter that refuses clone3. Architectures
	 * disagree whether the child tid is clone's 4th argument or its 5th
	 * (then the 4th is tls); passing it as both is right for either, since
	 * tls is ignored without CLONE_SETTLS.
	 */
#if defined(__s390__)
	r = syscall(SYS_clone, 0, flags | SIGCHLD, NULL, ctid, ctid);
#else
	r = syscall(SYS_clone, flags | SIGCHLD, 0, NULL, ctid, ctid);
#endif
	return (pid_t)r;
}

/*
 * The master's next request and the three fds it comes with (socket, log
 * pipe, page): false when the master closed its end. A malformed one ends
 * the zygote.
 */
static bool zygote_recv(int fd, unsigned ngroups, struct zygote_req *rq, int fds[3])
{
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { rq, sizeof(*rq) };
	struct msghdr m;
	struct cmsghdr *cm;
	int nfds = 0;
	ssize_t n;

	do {
		m = (struct msghdr){
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
		};
		n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		return false;
	for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
		int *in = (int *)CMSG_DATA(cm);
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t j = 0; j < k; j++) {
			if (nfds < 3)
				fds[nfds++] = in[j];
			else
				close(in[j]);
		}
	}
	if (n != (ssize_t)sizeof(*rq) || rq->magic != ZYGOTE_MAGIC || nfds != 3 ||
	    (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || rq->group >= ngroups)
		_exit(FP_WORKER_EXIT_PROTOCOL);
	return true;
}

/*
 * In the new worker, cloned for request rq: become it, a worker of group
 * rq->group of pool p (the C modules' or an exec program's), which were
 * made before this zygote was forked (fp_pool_new()), with that group's
 * limits and program.
 */
static _Noreturn void zygote_child(fp_pool *p, int fd, const struct zygote_req *rq,
				   const int fds[3], const struct fp_title_area *area)
{
	struct fp_group *q = p->groups[rq->group];
	const struct fp_zygote_child zc = {
		.shm_fd = fds[2],
		.close_fds = { fd, fds[1] },
		.title = *area,
	};
	struct fp_child c = {
		.master_pid = p->master_pid,
		.log_fd = fds[1],
		.args = fp__worker_args(q, rq->slot, rq->generation, rq->task_limit, fds[0]),
		.zygote = &zc,
	};

	fp__child_worker(&c);
}

/* Serve requests until the master closes its end; never returns. */
static _Noreturn void zygote_serve(fp_pool *p, int fd, const struct fp_title_area *area)
{
	int *ctid = NULL;

	if (prctl(PR_GET_TID_ADDRESS, &ctid, 0, 0, 0) < 0)
		ctid = NULL;
	for (;;) {
		struct zygote_req rq;
		struct zygote_rep rep;
		int fds[3] = { -1, -1, -1 };
		ssize_t n;
		pid_t pid;

		if (!zygote_recv(fd, p->ngroups, &rq, fds))
			_exit(FP_WORKER_EXIT_OK);
		/*
		 * The child maps its page itself and writes its pid there first
		 * thing: a mapping here would cost a munmap (and its TLB flush)
		 * per worker, and this process must stay cheap to clone.
		 */
		pid = clone_parent(ctid);
		if (pid == 0)
			zygote_child(p, fd, &rq, fds, area);
		rep = (struct zygote_rep){ .magic = ZYGOTE_MAGIC, .slot = rq.slot,
					   .generation = rq.generation,
					   .pid = pid < 0 ? -errno : pid };
		for (int i = 0; i < 3; i++)
			close(fds[i]);
		do
			n = send(fd, &rep, sizeof(rep), MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)sizeof(rep))
			_exit(FP_WORKER_EXIT_OK);
	}
}

static _Noreturn void zygote_main(fp_pool *p, int fd)
{
	struct fp_title_area area;
	sigset_t none;

	/* Once here what each worker would otherwise do for itself. */
	fp__child_detach(p->master_pid);
	/* Not the master's listening sockets, connections, loop or workers. */
	fp__child_close_cloexec(fd);
	fp__child_title_area(&area);
	fp__child_set_title(&area, "forkpool: zygote", "fp-zygote");
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	zygote_serve(p, fd, &area);
}

/* --- in the master ------------------------------------------------------- */

bool fp__zygote_wanted(void)
{
	const char *v = getenv("FORKPOOL_ZYGOTE");

	return !v || !(strcmp(v, "0") == 0 || strcmp(v, "off") == 0 || strcmp(v, "no") == 0);
}

static void zygote_read_cb(fp_io *io, ssize_t res, const char *buf);
static void zygote_lost(struct fp_zygote *z, const char *why);

static void zygote_maybe_free(struct fp_zygote *z)
{
	fp_pool *p = z->pool;
	struct fp_zygote **pp;

	if (!z->reaped || z->head || fp_io_active(&z->rio) || z->in_cb)
		return;
	fp_timer_stop(&z->stall);
	for (pp = &p->zygotes; *pp != z; pp = &(*pp)->next)
		;
	*pp = z->next;
	if (p->zygote == z)
		p->zygote = NULL;
	close(z->fd);
	free(z);
	fp__pool_check_stopped(p);
}

int fp__zygote_start(fp_pool *p)
{
	struct fp_zygote *z;
	int sv[2];
	pid_t pid;
	int err;

	fp__zygote_retire(p);
	z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		err = -errno;
		free(z);
		return err;
	}
	pid = fp__child_fork();
	if (pid == 0)
		zygote_main(p, sv[1]);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		free(z);
		return pid;
	}
	z->pool = p;
	z->pid = pid;
	z->fd = sv[0];
	z->rio.data = z;
	z->stall.data = z;
	z->next = p->zygotes;
	p->zygotes = z;
	p->zygote = z;
	fp_log_debug(&p->log, "zygote started, pid %d", (int)pid);
	if (p->loop)
		return fp__zygote_watch(p);
	return 0;
}

int fp__zygote_watch(fp_pool *p)
{
	struct fp_zygote *z = p->zygote;
	int err;

	if (!z || fp_io_active(&z->rio) || z->dead)
		return 0;
	/* Non-blocking for the loop's reads; its sends are MSG_DONTWAIT anyway. */
	err = fp_io_read_start(p->loop, &z->rio, z->fd, zygote_read_cb);
	if (err)
		zygote_lost(z, "cannot be watched");
	return err;
}

void fp__zygote_retire(fp_pool *p)
{
	struct fp_zygote *z = p->zygote;

	if (!z)
		return;
	p->zygote = NULL;
	z->retired = true;
	/* It reads what was sent, answers it, then reads EOF and exits. */
	shutdown(z->fd, SHUT_WR);
}

static void zygote_kill(struct fp_zygote *z)
{
	/* Not reaped: the pid is still the zygote's, at worst a zombie. */
	if (z->reaped)
		return;
	kill(z->pid, SIGKILL);
	/*
	 * Its end is then our doing, said where we chose it (a stall, an
	 * answer out of turn, the shutdown deadline): no news when it is
	 * reaped. One whose socket had ended already died of its own.
	 */
	if (!z->dead)
		z->killed = true;
}

void fp__zygote_kill_all(fp_pool *p)
{
	struct fp_zygote *z;

	for (z = p->zygotes; z; z = z->next)
		zygote_kill(z);
}

/*
 * The current zygote cannot be used any more: make another, or after
 * too many deaths in a row, fork workers directly.
 */
static void zygote_lost(struct fp_zygote *z, const char *why)
{
	fp_pool *p = z->pool;
	uint64_t now;

	zygote_kill(z);
	if (p->zygote != z)
		return;
	p->zygote = NULL;
	z->retired = true;
	if (p->state != FP_POOL_RUNNING)
		return;
	now = fp_now_ms();
	if (p->zygote_deaths && now - p->zygote_death_ms > ZYGOTE_DEATH_WINDOW_MS)
		p->zygote_deaths = 0;
	p->zygote_death_ms = now;
	if (++p->zygote_deaths >= ZYGOTE_MAX_DEATHS) {
		p->zygote_off = true;
		fp_log_error(&p->log, "zygote (pid %d) %s; %u deaths in a row: "
			     "forking workers in the master from now on",
			     (int)z->pid, why, p->zygote_deaths);
		return;
	}
	fp_log_error(&p->log, "zygote (pid %d) %s; starting another", (int)z->pid, why);
	if (fp__zygote_start(p) < 0)
		fp_log_error(&p->log, "cannot start a zygote; forking workers in the master");
}

static void stall_cb(fp_timer *t)
{
	struct fp_zygote *z = t->data;

	char why[64];

	snprintf(why, sizeof(why), "did not answer for %u ms, killed", ZYGOTE_STALL_MS);
	zygote_lost(z, why);
}

static void pending_pop(struct fp_zygote *z)
{
	struct fp_worker *w = z->head;

	z->head = w->znext;
	if (!z->head)
		z->tail = NULL;
	w->znext = NULL;
	w->zygote = NULL;
}

/* One answer; false when it makes no sense (the zygote is then given up). */
static bool zygote_answer(struct fp_zygote *z, const struct zygote_rep *rep)
{
	fp_pool *p = z->pool;
	struct fp_worker *w = z->head;

	if (rep->magic != ZYGOTE_MAGIC || !w || rep->slot != w->slot ||
	    rep->generation != w->generation) {
		zygote_lost(z, "answered out of turn");
		return false;
	}
	pending_pop(z);
	if (rep->pid > 0) {
		fp__worker_set_pid(w, rep->pid);
		fp_log_debug(&p->log, "worker %u gen %llu started, pid %d", w->slot,
			     (unsigned long long)w->generation, (int)rep->pid);
	} else {
		/* A start failure, with the crash-storm backoff that goes with it. */
		snprintf(w->initfail, sizeof(w->initfail), "the zygote could not fork it: %s",
			 strerror(rep->pid < 0 ? -rep->pid : EIO));
		fp__worker_unforked(w, false);
	}
	/* It may have come and gone already, waiting only for this. */
	fp__worker_maybe_free(w);
	return true;
}

/*
 * The zygote's socket ended: it is dead or dying. Settle what it left
 * unanswered from the shared pages (pool/zygote.c's header comment).
 */
static void zygote_dead(struct fp_zygote *z, ssize_t res)
{
	z->dead = true;
	fp_timer_stop(&z->stall);
	if (!z->retired || z->head)
		zygote_lost(z, res < 0 ? "broke its socket" : "died");
	while (z->head) {
		struct fp_worker *w = z->head;

		pending_pop(z);
		if (!fp__worker_learn_pid(w) && w->read_done)
			fp__worker_unforked(w, true);
		else
			fp__worker_maybe_free(w);
	}
}

static void zygote_read_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct fp_zygote *z = io->data;
	fp_pool *p = z->pool;
	bool answered = false, ok = true;

	z->in_cb = true;
	while (res > 0 && ok && !z->dead) {
		size_t take = sizeof(z->rbuf) - z->rlen;

		if (take > (size_t)res)
			take = (size_t)res;
		memcpy(z->rbuf + z->rlen, buf, take);
		z->rlen += take;
		buf += take;
		res -= (ssize_t)take;
		if (z->rlen == sizeof(z->rbuf)) {
			struct zygote_rep rep;

			memcpy(&rep, z->rbuf, sizeof(rep));
			z->rlen = 0;
			ok = zygote_answer(z, &rep);
			answered = true;
		}
	}
	if (answered) {
		if (z->head)
			fp_timer_start(p->loop, &z->stall, ZYGOTE_STALL_MS, stall_cb);
		else
			fp_timer_stop(&z->stall);
	}
	if (!fp_io_active(io))
		zygote_dead(z, res);
	/*
	 * A worker may have come and gone before its pid did: its SIGCHLD
	 * found nothing to wait for then.
	 */
	if (answered || !fp_io_active(io))
		fp__reap(&p->sigchld, SIGCHLD);
	z->in_cb = false;
	zygote_maybe_free(z);
	fp__dispatch(p->groups[0]);
}

int fp__zygote_spawn(struct fp_group *g, struct fp_worker *w, int sock, int log_wr, int shm_fd)
{
	/* The pool's zygote clones every group's workers, the exec groups' too. */
	struct fp_zygote *z = g->pool->zygote;
	struct zygote_req rq = {
		.magic = ZYGOTE_MAGIC,
		.slot = w->slot,
		.generation = w->generation,
		.task_limit = w->tasks_limit,
		.group = g->index,
	};
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { &rq, sizeof(rq) };
	struct msghdr m = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *cm;
	int fds[3] = { sock, log_wr, shm_fd };
	ssize_t n;

	if (!z || z->dead)
		return -ENOTCONN;
	memset(&ctl, 0, sizeof(ctl));
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	/* A zygote that far behind is as good as stuck: never wait for it. */
	do
		n = sendmsg(z->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(rq))
		return n < 0 ? -errno : -EIO;

	w->zygote = z;
	if (z->tail)
		z->tail->znext = w;
	else
		z->head = w;
	z->tail = w;
	if (!fp_timer_active(&z->stall))
		fp_timer_start(g->loop, &z->stall, ZYGOTE_STALL_MS, stall_cb);
	return 0;
}

void fp__zygote_collect(fp_pool *p, int timeout_ms)
{
	struct fp_zygote *z = p->zygote;
	uint64_t end = fp_now_ms() + (uint64_t)timeout_ms;

	while (z && p->zygote == z && z->head && !fp_io_active(&z->rio)) {
		struct pollfd pfd = { z->fd, POLLIN, 0 };
		struct zygote_rep rep;
		uint64_t now = fp_now_ms();
		ssize_t n;

		if (now >= end || poll(&pfd, 1, (int)(end - now)) <= 0)
			return;
		n = recv(z->fd, &rep, sizeof(rep), MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		/* EOF or a short answer: left to the loop, which sees it too. */
		if (n != (ssize_t)sizeof(rep) || !zygote_answer(z, &rep))
			return;
		if (!z->head)
			fp_timer_stop(&z->stall);
	}
}

void fp__zygote_reap(fp_pool *p)
{
	struct fp_zygote *z, *next;
	char how[64];
	int status;

	for (z = p->zygotes; z; z = next) {
		pid_t r;

		next = z->next;
		if (z->reaped)
			continue;
		do
			r = waitpid(z->pid, &status, WNOHANG);
		while (r < 0 && errno == EINTR);
		if (r != z->pid && !(r < 0 && errno == ECHILD))
			continue;
		z->reaped = true;
		z->status = r == z->pid ? status : 0;
		fp__describe_status(z->status, how, sizeof(how));
		/*
		 * Its answers may still be on the way: it sent them before it
		 * left. Only a death we did not ask for is a warning: a clean
		 * shutdown's deadline (at once for fp_pool_free()) SIGKILLs a
		 * retired zygote that has not read its EOF yet.
		 */
		if ((z->retired && WIFEXITED(z->status) &&
		     WEXITSTATUS(z->status) == FP_WORKER_EXIT_OK) || z->killed)
			fp_log_debug(&p->log, "zygote (pid %d) %s", (int)z->pid, how);
		else
			fp_log_warn(&p->log, "zygote (pid %d) %s", (int)z->pid, how);
		zygote_maybe_free(z);
	}
}

void fp__zygote_free_all(fp_pool *p)
{
	struct fp_zygote *z;

	while ((z = p->zygotes)) {
		p->zygotes = z->next;
		if (!z->reaped) {
			kill(z->pid, SIGKILL);
			while (waitpid(z->pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
		fp_timer_stop(&z->stall);
		close(z->fd);
		free(z);
	}
	p->zygote = NULL;
}
