/*
 * Listeners: "HOST:PORT", "[V6]:PORT" and "unix:/path" parsed, resolved,
 * bound and listened on (a unix socket file left by a dead server taken
 * over, one a live server answers on refused; its mode the server's, not
 * the umask's), accepted sockets handed to fp__http_conn_accept(), and the
 * loopback check on an address.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "http_impl.h"

/* The owner and its group may connect; others may not. */
#define FP_HTTP_UNIX_MODE 0660

void fp_http_set_unix_mode(fp_http_server *srv, unsigned mode)
{
	if (!srv)
		return;
	srv->unix_mode = mode & 0777;
	srv->unix_mode_set = 1;
}

void fp__http_listener_close(struct listener *l)
{
	struct stat st;

	if (l->fd < 0)
		return;
	close(l->fd);
	l->fd = -1;
	l->srv->nlisten_open--;
	/* Only our own socket file: another server may have taken the path. */
	if (l->path[0] && lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_ino == l->ino && st.st_dev == l->dev)
		unlink(l->path);
}

static void accept_cb(fp_io *io, ssize_t res, const char *buf)
{
	struct listener *l = io->data;
	fp_http_server *srv = l->srv;

	if (res >= 0) {
		if (srv->stopping)
			close((int)res);
		else
			fp__http_conn_accept(srv, l, (int)res);
		return;
	}
	/* EMFILE and the like: the accept goes on, nothing to do here. */
	if (fp_io_active(io))
		return;
	fp__http_listener_close(l);
	fp__http_server_check_done(srv);
}

static int listener_add(fp_http_server *srv, int fd, int family, const char *path,
			char *errbuf, size_t errlen)
{
	struct listener *l;
	struct stat st;
	int r;

	l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return fp_errbuf_printf(errbuf, errlen, -ENOMEM, "out of memory");
	}
	l->srv = srv;
	l->fd = fd;
	l->family = family;
	l->io.data = l;
	if (path) {
		snprintf(l->path, sizeof(l->path), "%s", path);
		if (stat(path, &st) == 0) {
			l->ino = st.st_ino;
			l->dev = st.st_dev;
		}
	}
	r = fp_io_accept_start(srv->loop, &l->io, fd, accept_cb);
	if (r < 0) {
		close(fd);
		if (path)
			unlink(path);
		free(l);
		return fp_errbuf_printf(errbuf, errlen, r, "cannot accept: %s", strerror(-r));
	}
	l->next = srv->listeners;
	srv->listeners = l;
	srv->nlisten_open++;
	return 0;
}

/* 1: a server answers on the socket file; 0: nobody does (a stale file). */
static int unix_socket_live(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int live;

	if (fd < 0)
		return 0;
	/* Non-blocking: a listener with a full backlog says EAGAIN, still live. */
	live = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ||
	       errno == EAGAIN || errno == EINPROGRESS;
	close(fd);
	return live;
}

static int listen_unix(fp_http_server *srv, const char *path, char *bound,
		       size_t boundlen, char *errbuf, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	mode_t mode, old_mask;
	int fd, r;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (!*path)
		return fp_errbuf_printf(errbuf, errlen, -EINVAL, "unix: needs a path");
	if (strlen(path) >= sizeof(sa.sun_path))
		return fp_errbuf_printf(errbuf, errlen, -ENAMETOOLONG,
					 "unix:%s: path longer than %zu bytes", path,
					 sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return fp_errbuf_printf(errbuf, errlen, -EEXIST,
						 "unix:%s: exists and is not a socket", path);
		if (unix_socket_live(&sa))
			return fp_errbuf_printf(errbuf, errlen, -EADDRINUSE,
						 "unix:%s: another server is listening there",
						 path);
		/* Left behind by a server that died: take the path over. */
		if (unlink(path) < 0 && errno != ENOENT)
			return fp_errbuf_printf(errbuf, errlen, -errno,
						 "unix:%s: cannot remove stale socket: %s", path,
						 strerror(errno));
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fp_errbuf_printf(errbuf, errlen, -errno, "socket: %s", strerror(errno));
	/*
	 * bind() makes the file with 0777 less the umask, so the umask alone
	 * says who may connect (0755 under the usual 022: anyone). The mode is
	 * set at creation through the umask, not by a chmod() after it: that
	 * would leave a moment with the umask's mode, and follow a symlink put
	 * in the socket's place in a shared directory. The umask is the
	 * process's; the master runs one thread, and it is put back at once.
	 */
	mode = srv->unix_mode_set ? srv->unix_mode : FP_HTTP_UNIX_MODE;
	old_mask = umask(~mode & 0777);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old_mask);
	if (r < 0) {
		close(fd);
		return fp_errbuf_printf(errbuf, errlen, r, "cannot bind unix:%s: %s", path,
					 strerror(-r));
	}
	if (listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		close(fd);
		unlink(path);
		return fp_errbuf_printf(errbuf, errlen, r, "cannot listen on unix:%s: %s", path,
					 strerror(-r));
	}
	r = listener_add(srv, fd, AF_UNIX, path, errbuf, errlen);
	if (r < 0)
		return r;
	if (bound && boundlen)
		snprintf(bound, boundlen, "unix:%s", path);
	return 0;
}

/* "host:port" or "[v6]:port" into its parts; host "" or "*" is any. */
static int split_host_port(const char *addr, char *host, size_t hostlen,
			   unsigned *port)
{
	const char *h = addr, *end, *ps;
	size_t n;
	char *stop;
	unsigned long v;

	if (*addr == '[') {
		h = addr + 1;
		end = strchr(h, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		ps = end + 2;
	} else {
		end = strrchr(addr, ':');
		if (!end)
			return -EINVAL;
		ps = end + 1;
		/* An IPv6 address without brackets is ambiguous with the port. */
		if (memchr(addr, ':', (size_t)(end - addr)))
			return -EINVAL;
	}
	n = (size_t)(end - h);
	if (n >= hostlen)
		return -ENAMETOOLONG;
	memcpy(host, h, n);
	host[n] = '\0';
	if (*ps < '0' || *ps > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(ps, &stop, 10);
	if (errno || *stop || v > 65535)
		return -EINVAL;
	*port = (unsigned)v;
	return 0;
}

void fp__http_format_inet(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(out, outlen, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

static int listen_inet(fp_http_server *srv, const char *addr, char *bound,
		       size_t boundlen, char *errbuf, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char host[256], portstr[8];
	unsigned port;
	int fd = -1, r, one = 1, gai;

	r = split_host_port(addr, host, sizeof(host), &port);
	if (r < 0)
		return fp_errbuf_printf(errbuf, errlen, r,
					 "%s: expected HOST:PORT, [IPV6]:PORT or unix:/path", addr);
	if (!*host || !strcmp(host, "*"))
		snprintf(host, sizeof(host), "0.0.0.0");
	snprintf(portstr, sizeof(portstr), "%u", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	gai = getaddrinfo(host, portstr, &hints, &res);
	if (gai)
		return fp_errbuf_printf(errbuf, errlen,
					 gai == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL,
					 "%s: cannot resolve %s: %s", addr, host,
					 gai_strerror(gai));

	/* The first address that binds ("localhost" may give ::1 and 127.0.0.1). */
	r = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* [::] must not take IPv4 too: 0.0.0.0 may be listened on apart. */
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
			break;
		r = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return fp_errbuf_printf(errbuf, errlen, r, "cannot listen on %s: %s", addr,
					 strerror(-r));
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
		r = -errno;
		close(fd);
		return fp_errbuf_printf(errbuf, errlen, r, "getsockname: %s", strerror(-r));
	}
	r = listener_add(srv, fd, ss.ss_family, NULL, errbuf, errlen);
	if (r < 0)
		return r;
	if (bound && boundlen)
		fp__http_format_inet(&ss, bound, boundlen);
	return 0;
}

int fp_http_listen(fp_http_server *srv, const char *addr, char *bound, size_t boundlen,
		   char *errbuf, size_t errlen)
{
	if (!srv || !addr)
		return fp_errbuf_printf(errbuf, errlen, -EINVAL, "no address");
	if (srv->freeing || srv->stopping)
		return fp_errbuf_printf(errbuf, errlen, -EINVAL, "the server is stopping");
	if (!strncmp(addr, "unix:", 5))
		return listen_unix(srv, addr + 5, bound, boundlen, errbuf, errlen);
	return listen_inet(srv, addr, bound, boundlen, errbuf, errlen);
}

int fp_http_addr_is_loopback(const char *addr)
{
	char host[256];
	unsigned port;
	struct in_addr a4;
	struct in6_addr a6;
	const char *h = host;

	if (!addr)
		return 0;
	if (!strncmp(addr, "unix:", 5))
		return 1;
	if (split_host_port(addr, host, sizeof(host), &port) < 0) {
		/* A bare host is fine too. */
		if (strlen(addr) >= sizeof(host))
			return 0;
		snprintf(host, sizeof(host), "%s", addr);
		if (host[0] == '[' && host[strlen(host) - 1] == ']') {
			host[strlen(host) - 1] = '\0';
			h = host + 1;
		}
	}
	if (!strcasecmp(h, "localhost") || !strcasecmp(h, "localhost."))
		return 1;
	if (inet_pton(AF_INET, h, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, h, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return 0;
}
