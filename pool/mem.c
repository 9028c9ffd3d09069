/*
 * fp_mem_alloc() and fp_mem_free(), the big-block allocator <forkpool/loop.h>
 * describes: malloc below MEM_BIG, a MADV_DONTFORK mapping of its own above.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "forkpool/loop.h"

/* Blocks from here up get a mapping of their own (see <forkpool/loop.h>). */
#define MEM_BIG (256u << 10)
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
	if (total < MEM_BIG) {
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
