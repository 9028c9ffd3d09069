/*
 * Memory for the master's big blocks: a map's items and their arguments,
 * the chunks written to workers, the results of a blocking map.
 *
 * Blocks of FP_MEM_BIG bytes or more get a mapping of their own, marked
 * MADV_DONTFORK: a worker never touches them, so fork() need not copy their
 * page tables, and the master does not pay a copy-on-write fault for every
 * page it writes after each fork (in this VM, the bulk of a recycle's cost).
 * Blocks of 4 MiB and more also ask for transparent huge pages: a million-item
 * map touches some 100 MB at once, 25,000 faults in 4 KiB pages.
 *
 * Small blocks come from malloc. Both kinds are zeroed, and are released with
 * fp_mem_free() only.
 */
#ifndef FP_MEM_H
#define FP_MEM_H

#include <stddef.h>

#define FP_MEM_BIG (256u << 10)

void *fp_mem_alloc(size_t len);
void fp_mem_free(void *p);

#endif
