/* Memory helpers shared by the pool's files. */
#ifndef FP_MEM_H
#define FP_MEM_H

#include <stddef.h>

/*
 * Ask for transparent huge pages under a large, fresh heap block (a map's
 * items, their arguments, its results). A million-item map touches some
 * 100 MB at once; in 4 KiB pages that is 25,000 page faults, each costly in
 * a VM. Only the 2 MiB-aligned interior is advised; smaller blocks are left
 * alone. Harmless where THP is off.
 */
void fp_mem_hint_huge(void *p, size_t len);

#endif
