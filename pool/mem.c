#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "mem.h"

#define HUGE_PAGE (2u << 20)

/* In front of every block: how it was made. 16 bytes keep it aligned. */
struct mem_head {
	size_t mapped;       /* bytes mapped, 0 for a malloc block */
	size_t pad;
};

static void hint_huge(void *p, size_t len)
{
	uintptr_t start = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
	uintptr_t end = ((uintptr_t)p + len) & ~(uintptr_t)(HUGE_PAGE - 1);

	if (end > start)
		madvise((void *)start, end - start, MADV_HUGEPAGE);
}

void *fp_mem_alloc(size_t len)
{
	struct mem_head *h;
	size_t total = len + sizeof(*h);

	if (total < len)
		return NULL;
	if (total < FP_MEM_BIG) {
		h = calloc(1, total);
		if (!h)
			return NULL;
		return h + 1;
	}
	h = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h == MAP_FAILED)
		return NULL;
	/* Only this mapping is advised: nothing else can ever live in it. */
	madvise(h, total, MADV_DONTFORK);
	if (total >= 2 * HUGE_PAGE)
		hint_huge(h, total);
	h->mapped = total;
	return h + 1;
}

void fp_mem_free(void *p)
{
	struct mem_head *h;

	if (!p)
		return;
	h = (struct mem_head *)p - 1;
	if (h->mapped)
		munmap(h, h->mapped);
	else
		free(h);
}
