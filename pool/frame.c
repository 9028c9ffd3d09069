/* Frame headers checked (frame.h), packed frames written (frame_pack.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "frame_pack.h"

char *fp_frame_put_tasks(char *dst, uint64_t id0, uint32_t n, const char *name,
			 uint32_t name_len, uint32_t len, uint32_t flags, unsigned hops)
{
	struct fp_frame_header h;
	struct fp_frame_pack k = { .n = n, .name_len = name_len };

	fp_frame_header_init(&h, FP_FRAME_TASKS, id0, len, flags);
	h.hop = (uint8_t)hops;
	memcpy(dst, &h, sizeof(h));
	memcpy(dst + sizeof(h), &k, sizeof(k));
	memcpy(dst + sizeof(h) + sizeof(k), name, name_len);
	return dst + sizeof(h) + sizeof(k) + name_len;
}

char *fp_frame_put_tasks_item(char *dst, const void *args, uint32_t args_len)
{
	memcpy(dst, &args_len, sizeof(args_len));
	memcpy(dst + sizeof(args_len), args, args_len);
	return dst + sizeof(args_len) + args_len;
}

char *fp_frame_put_results(char *dst, uint64_t id0, uint32_t n, uint32_t len,
			   uint32_t rss_kib, unsigned hop)
{
	struct fp_frame_header h;
	struct fp_frame_pack k = { .n = n, .name_len = 0 };

	fp_frame_header_init(&h, FP_FRAME_RESULTS, id0, len, 0);
	h.rss_kib = rss_kib;
	h.hop = (uint8_t)hop;
	memcpy(dst, &h, sizeof(h));
	memcpy(dst + sizeof(h), &k, sizeof(k));
	return dst + sizeof(h) + sizeof(k);
}

char *fp_frame_put_results_item(char *dst, uint32_t flags, const void *value, uint32_t len)
{
	memcpy(dst, &flags, sizeof(flags));
	memcpy(dst + sizeof(flags), &len, sizeof(len));
	memcpy(dst + sizeof(flags) + sizeof(len), value, len);
	return dst + sizeof(flags) + sizeof(len) + len;
}

int fp_frame_header_check(const struct fp_frame_header *h, size_t max_payload)
{
	if (h->magic != FP_FRAME_MAGIC || h->type == 0 || h->type >= FP_FRAME_TYPE_MAX_)
		return -EPROTO;
	if (h->hop > FP_FRAME_HOPS_MAX)
		return -EPROTO;
	if (h->len > max_payload)
		return -EMSGSIZE;
	return 0;
}
