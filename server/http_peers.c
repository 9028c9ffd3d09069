/*
 * Open connections counted by client address, for the per-address cap
 * (max_connections_per_ip): a hash table of addresses (IPv4 as IPv4-mapped
 * IPv6, so one key type serves both) with a count each, an entry made at an
 * address's first connection and freed with its last. It knows nothing of
 * connections, only of addresses.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_impl.h"

struct peer {
	struct peer *next;
	struct in6_addr ip;
	unsigned n;
};

struct fp__http_peers {
	struct peer **buckets;
	size_t mask;
};

/* FNV-1a over the 16 bytes: addresses are not chosen to collide by anyone
 * who cannot also open that many connections from as many addresses. */
static size_t ip_hash(const struct in6_addr *ip)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < sizeof(ip->s6_addr); i++) {
		h ^= ip->s6_addr[i];
		h *= 1099511628211ull;
	}
	return (size_t)(h ^ (h >> 32));
}

int fp__http_peers_new(struct fp__http_peers **out, unsigned max_connections)
{
	struct fp__http_peers *p;
	size_t n = 64;

	*out = NULL;
	/* About two connections a bucket when every one is from another address. */
	while (n < max_connections / 2 && n < (1u << 20))
		n *= 2;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->buckets = calloc(n, sizeof(*p->buckets));
	if (!p->buckets) {
		free(p);
		return -ENOMEM;
	}
	p->mask = n - 1;
	*out = p;
	return 0;
}

void fp__http_peers_free(struct fp__http_peers *p)
{
	struct peer *e;
	size_t i;

	if (!p)
		return;
	for (i = 0; i <= p->mask; i++) {
		while ((e = p->buckets[i])) {
			p->buckets[i] = e->next;
			free(e);
		}
	}
	free(p->buckets);
	free(p);
}

static struct peer **slot_of(const struct fp__http_peers *p, const struct in6_addr *ip)
{
	struct peer **pp = &p->buckets[ip_hash(ip) & p->mask];

	while (*pp && memcmp(&(*pp)->ip, ip, sizeof(*ip)))
		pp = &(*pp)->next;
	return pp;
}

unsigned fp__http_peers_count(const struct fp__http_peers *p, const struct in6_addr *ip)
{
	struct peer *e = *slot_of(p, ip);

	return e ? e->n : 0;
}

int fp__http_peers_add(struct fp__http_peers *p, const struct in6_addr *ip)
{
	struct peer **pp = slot_of(p, ip), *e = *pp;

	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		e->ip = *ip;
		*pp = e;
	}
	e->n++;
	return 0;
}

void fp__http_peers_remove(struct fp__http_peers *p, const struct in6_addr *ip)
{
	struct peer **pp = slot_of(p, ip), *e = *pp;

	if (!e)
		return;
	if (--e->n == 0) {
		*pp = e->next;
		free(e);
	}
}
