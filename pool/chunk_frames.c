/*
 * A chunk into frames: each segment as one TASKS frame when it may go
 * packed, else one TASK frame per item; a single big argument is written
 * from the call's memory (the second iovec) rather than copied.
 */
#include <errno.h>
#include <string.h>

#include "chunk.h"
#include "frame_pack.h"
#include "forkpool/loop.h"
#include "pool_impl.h"

/* A single argument larger than this is written from the call's memory. */
#define COPY_ARGS_MAX (64u * 1024)

static char *put_task_header(char *dst, uint64_t id, const struct fp_call *call,
			     uint32_t args_len, bool last)
{
	struct fp_frame_header h;

	fp_frame_header_init(&h, FP_FRAME_TASK, id, call->name_len + 1 + args_len,
			     call->ops->frame_flags | (last ? FP_FRAME_FLUSH : 0));
	memcpy(dst, &h, sizeof(h));
	dst += sizeof(h);
	memcpy(dst, call->task, call->name_len + 1);
	return dst + call->name_len + 1;
}

/*
 * The worker's chunk buffer is kept from one chunk to the next: a fresh
 * mapping per chunk would be faulted in and zeroed again every time.
 */
static int wbuf_reserve(struct fp_worker *w, size_t len)
{
	char *b;

	if (len <= w->wcap)
		return 0;
	b = fp_mem_alloc(len);
	if (!b)
		return -ENOMEM;
	fp_mem_free(w->wbuf);
	w->wbuf = b;
	w->wcap = len;
	return 0;
}

/*
 * The name a segment's TASKS frame carries: its task's, or for a chain its
 * tasks' names, one after the other, NUL-separated, from call->task on.
 */
static uint32_t seg_name_len(const struct fp_seg *sg)
{
	return sg->hops ? sg->call->ops->chain_name_len(sg->call, sg->hops) : sg->call->name_len;
}

/*
 * Whether a segment goes as one TASKS frame: two items or more, or a chain
 * (chunk.c made sure it fits), to a worker that reads them (an exec pool's
 * shim speaks per-item frames), within what the worker's reader takes.
 */
static bool seg_packed(const struct fp_group *g, const struct fp_seg *sg, size_t args_total)
{
	return (sg->count >= 2 || sg->hops) && !g->exec && sg->call->name_len > 0 &&
	       fp_frame_tasks_len(sg->count, seg_name_len(sg), args_total) <= g->opts.max_payload;
}

int fp__chunk_encode(struct fp_worker *w, const struct fp_seg *segs, uint32_t nsegs,
		     uint64_t base, struct iovec iov[2])
{
	struct fp_group *g = w->group;
	uint64_t id = base;
	size_t total = 0, i, args_total[FP_BATCH_MAX];
	uint32_t s, count = 0;
	int iovcnt = 1;
	char *dst;

	for (s = 0; s < nsegs; s++) {
		const struct fp_call *call = segs[s].call;

		args_total[s] = 0;
		for (i = 0; i < segs[s].count; i++)
			args_total[s] += call->items[segs[s].first + i].len;
		if (seg_packed(g, &segs[s], args_total[s]))
			total += FP_FRAME_HEADER_SIZE +
				 fp_frame_tasks_len(segs[s].count, seg_name_len(&segs[s]),
						    args_total[s]);
		else
			total += segs[s].count * (FP_FRAME_HEADER_SIZE + call->name_len + 1) +
				 args_total[s];
		count += segs[s].count;
	}

	if (count == 1 && !segs[0].hops &&
	    segs[0].call->items[segs[0].first].len > COPY_ARGS_MAX) {
		/* One big argument: send it from where it is. */
		struct fp_call *call = segs[0].call;
		const struct fp_buf *it = &call->items[segs[0].first];
		if (wbuf_reserve(w, FP_FRAME_HEADER_SIZE + call->name_len + 1))
			return -ENOMEM;
		dst = put_task_header(w->wbuf, base, call, (uint32_t)it->len, true);
		iov[0] = (struct iovec){ w->wbuf, (size_t)(dst - w->wbuf) };
		iov[1] = (struct iovec){ (void *)it->base, it->len };
		iovcnt = 2;
	} else {
		if (wbuf_reserve(w, total))
			return -ENOMEM;
		dst = w->wbuf;
		for (s = 0; s < nsegs; s++) {
			const struct fp_call *call = segs[s].call;

			if (seg_packed(g, &segs[s], args_total[s])) {
				uint32_t name_len = seg_name_len(&segs[s]);

				dst = fp_frame_put_tasks(
					dst, id, segs[s].count, call->task, name_len,
					(uint32_t)fp_frame_tasks_len(segs[s].count, name_len,
								     args_total[s]),
					call->ops->frame_flags |
						(s + 1 == nsegs ? FP_FRAME_FLUSH : 0),
					segs[s].hops);
				for (i = 0; i < segs[s].count; i++) {
					const struct fp_buf *it = &call->items[segs[s].first + i];
					dst = fp_frame_put_tasks_item(dst, it->base, (uint32_t)it->len);
				}
				id += segs[s].count;
				continue;
			}
			for (i = 0; i < segs[s].count; i++) {
				const struct fp_buf *it = &call->items[segs[s].first + i];
				dst = put_task_header(dst, id, call, (uint32_t)it->len,
						      id + 1 == base + count);
				id++;
				memcpy(dst, it->base, it->len);
				dst += it->len;
			}
		}
		iov[0] = (struct iovec){ w->wbuf, total };
	}
	return iovcnt;
}
