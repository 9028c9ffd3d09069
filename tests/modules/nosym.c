/* A shared object that is not a module: it exports no `fp_module`. */
#include "forkpool/task.h"

__attribute__((visibility("default"))) int not_a_module(void);

int not_a_module(void)
{
	return 42;
}
