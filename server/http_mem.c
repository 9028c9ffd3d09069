/*
 * A connection in memory, for tests and the fuzzer: the transport
 * (http_impl.h, struct conn_io_ops) that takes the client's bytes from its
 * caller and keeps what the server writes, so the real connection code runs
 * from the first byte read to the last byte written with no socket and no
 * loop I/O. The caller stands for the loop: it delivers reads, and a write or
 * a cancel ends when it calls fp_http_mem_turn(), never inside the server's
 * call that started it. It knows nothing of what the bytes mean.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_impl.h"

struct fp_http_mem {
	struct conn *c;                /* NULL once the server closed it */
	struct buf out;                /* everything written */
	size_t write_len;              /* the write in flight, already in out */
	uint8_t write_pending;
	uint8_t cancelled;
	uint8_t shut;                  /* the server's FIN */
	uint8_t eof_sent;              /* the client's FIN or reset */
};

static int mem_write(struct conn *c, const struct iovec *iov, int iovcnt)
{
	struct fp_http_mem *m = c->io_data;
	size_t total = 0;
	int i, r;

	for (i = 0; i < iovcnt; i++) {
		r = fp__http_buf_append(&m->out, iov[i].iov_base, iov[i].iov_len);
		if (r < 0)
			return r;
		total += iov[i].iov_len;
	}
	m->write_len = total;
	m->write_pending = 1;
	return 0;
}

static void mem_cancel(struct conn *c)
{
	struct fp_http_mem *m = c->io_data;

	m->cancelled = 1;
}

static void mem_shutdown(struct conn *c)
{
	struct fp_http_mem *m = c->io_data;

	m->shut = 1;
}

static void mem_close(struct conn *c)
{
	struct fp_http_mem *m = c->io_data;

	m->c = NULL;
	c->io_data = NULL;
}

static const struct conn_io_ops mem_ops = {
	.write = mem_write,
	.cancel = mem_cancel,
	.shutdown = mem_shutdown,
	.close = mem_close,
};

int fp_http_mem_open(fp_http_server *srv, fp_http_mem **out)
{
	struct fp_http_mem *m;
	struct conn *c;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	c = fp__http_conn_new(srv, &mem_ops);
	if (!c) {
		free(m);
		return -ENOMEM;
	}
	c->io_data = m;
	c->unix_peer = 1;
	snprintf(c->peer, sizeof(c->peer), "memory");
	c->peer_done = 1;
	m->c = c;
	fp__http_conn_open(c);
	fp__http_conn_await(c);
	*out = m;
	return 0;
}

int fp_http_mem_send(fp_http_mem *m, const void *data, size_t len)
{
	if (!m->c || m->c->read_done || m->cancelled || m->eof_sent)
		return -EPIPE;
	if (len)
		fp__http_conn_read(m->c, (ssize_t)len, data);
	return 0;
}

static void client_eof(fp_http_mem *m, ssize_t res)
{
	if (!m->c || m->c->read_done || m->eof_sent)
		return;
	m->eof_sent = 1;
	/* After a cancel the read's last call is the cancel's, at the next turn. */
	if (!m->cancelled)
		fp__http_conn_read(m->c, res, NULL);
}

void fp_http_mem_shutdown(fp_http_mem *m)
{
	client_eof(m, 0);
}

int fp_http_mem_turn(fp_http_mem *m)
{
	struct conn *c = m->c;
	size_t n;

	if (!c)
		return 0;
	if (m->write_pending) {
		m->write_pending = 0;
		n = m->write_len;
		m->write_len = 0;
		fp__http_conn_written(c, m->cancelled ? -ECANCELED : (ssize_t)n);
		return 1;
	}
	if (m->cancelled && !c->read_done) {
		fp__http_conn_read(c, -ECANCELED, NULL);
		return 1;
	}
	return 0;
}

const char *fp_http_mem_output(const fp_http_mem *m, size_t *len)
{
	*len = m->out.len;
	return m->out.p ? m->out.p : "";
}

void fp_http_mem_clear(fp_http_mem *m)
{
	m->out.len = 0;
}

int fp_http_mem_server_shut(const fp_http_mem *m)
{
	return m->shut;
}

int fp_http_mem_closed(const fp_http_mem *m)
{
	return m->c == NULL;
}

void fp_http_mem_close(fp_http_mem *m)
{
	if (!m)
		return;
	client_eof(m, -ECONNRESET);
	/* A half-closed client's connection may live on: end it as a reset does. */
	if (m->c && !m->c->dead) {
		m->c->busy++;
		fp__http_conn_kill(m->c);
		fp__http_conn_leave(m->c);
	}
	/* Then end what it cancelled: its last calls close it. */
	while (fp_http_mem_turn(m) > 0)
		;
	fp__http_buf_free(&m->out);
	free(m);
}
