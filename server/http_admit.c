/*
 * Who gets a connection at the caps. The idle list holds the connections
 * that wait for a request with nothing to send, in the order they became
 * idle; at max_connections the longest idle is closed to admit a new one
 * (nginx does the same with its reusable connections), and at the
 * per-address cap the longest idle of that address. A connection with a
 * request under way, a response being written or bytes not yet parsed is
 * never closed for another. With nothing to close, a new connection over
 * max_connections is refused (accepted and closed) and one over its
 * address's cap is answered 429 (http_conn.c does that).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "http_impl.h"

/* --- the idle list ---------------------------------------------------------- */

void fp__http_idle_leave(struct conn *c)
{
	fp_http_server *srv = c->srv;

	if (!c->idle_listed)
		return;
	if (c->idle_prev)
		c->idle_prev->idle_next = c->idle_next;
	else
		srv->idle_head = c->idle_next;
	if (c->idle_next)
		c->idle_next->idle_prev = c->idle_prev;
	else
		srv->idle_tail = c->idle_prev;
	c->idle_prev = c->idle_next = NULL;
	c->idle_listed = 0;
}

void fp__http_idle_enter(struct conn *c)
{
	fp_http_server *srv = c->srv;

	fp__http_idle_leave(c);
	if (c->dead || c->closing || c->peer_eof)
		return;
	c->idle_prev = srv->idle_tail;
	if (srv->idle_tail)
		srv->idle_tail->idle_next = c;
	else
		srv->idle_head = c;
	srv->idle_tail = c;
	c->idle_listed = 1;
}

/*
 * Listed, but never to be idle again: a request began (its parser callback
 * takes it off the list; an error before that does not), or the connection
 * is closing. Taken off the list when met.
 */
static int idle_stale(const struct conn *c)
{
	return c->dead || c->closing || c->peer_eof || c->phase != PH_IDLE;
}

/*
 * Idle this moment: its last response written in full, and nothing of a
 * next request read. A response still being written keeps it listed: it
 * will be idle as soon as the write completes.
 */
static int idle_now(const struct conn *c)
{
	return !c->unsent && !c->writing && !c->in.len && !c->resume_pending &&
	       !c->zombie && !c->reap_later;
}

/* Close the longest-idle connection, of address `ip` when not NULL. 1 if one was. */
static int evict_idle(fp_http_server *srv, const struct in6_addr *ip)
{
	struct conn *c, *n;

	for (c = srv->idle_head; c; c = n) {
		n = c->idle_next;
		if (idle_stale(c)) {
			fp__http_idle_leave(c);
			continue;
		}
		if (!idle_now(c) || (ip && (!c->ip_counted || memcmp(&c->ip, ip, sizeof(*ip)))))
			continue;
		srv->stats.evicted++;
		/* Between requests: closing loses the client nothing it asked for
		 * (RFC 9112 9.3.1 lets a server close an idle connection). */
		fp__http_conn_kill(c);
		return 1;
	}
	return 0;
}

/* --- admission ------------------------------------------------------------------ */

/*
 * The client's address of an accepted fd, IPv4 as IPv4-mapped IPv6; its
 * printed form (no port) in `text`. 0, or -errno.
 */
int fp__http_peer_ip(int fd, struct in6_addr *ip, char *text, size_t textlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;

		memset(ip, 0, sizeof(*ip));
		ip->s6_addr[10] = ip->s6_addr[11] = 0xff;
		memcpy(&ip->s6_addr[12], &s4->sin_addr, 4);
		inet_ntop(AF_INET, &s4->sin_addr, text, (socklen_t)textlen);
		return 0;
	}
	if (ss.ss_family == AF_INET6) {
		*ip = ((const struct sockaddr_in6 *)&ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(ip))
			inet_ntop(AF_INET, &ip->s6_addr[12], text, (socklen_t)textlen);
		else
			inet_ntop(AF_INET6, ip, text, (socklen_t)textlen);
		return 0;
	}
	return -EAFNOSUPPORT;
}

enum fp__http_admit fp__http_admit(fp_http_server *srv, const struct in6_addr *ip)
{
	const struct fp_http_limits *lim = &srv->lim;
	int over_ip = 0;

	/* The address's own idle connection first: that also makes room under
	 * max_connections. */
	if (ip && srv->peers && lim->max_connections_per_ip &&
	    fp__http_peers_count(srv->peers, ip) >= lim->max_connections_per_ip &&
	    !evict_idle(srv, ip))
		over_ip = 1;
	if (lim->max_connections && srv->live >= lim->max_connections && !evict_idle(srv, NULL))
		return FP__HTTP_REFUSE;
	return over_ip ? FP__HTTP_ADMIT_OVER_IP : FP__HTTP_ADMIT;
}
