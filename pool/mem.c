#include <stdint.h>
#include <sys/mman.h>

#include "mem.h"

#define HUGE_PAGE (2u << 20)

void fp_mem_hint_huge(void *p, size_t len)
{
	uintptr_t start = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
	uintptr_t end = ((uintptr_t)p + len) & ~(uintptr_t)(HUGE_PAGE - 1);

	if (len < 2 * HUGE_PAGE || end <= start)
		return;
	madvise((void *)start, end - start, MADV_HUGEPAGE);
}
