/* A module with a task that has a name but no function. */
#include "forkpool/task.h"

static const struct fp_task tasks[] = {
	{ "nullfn.nothing", NULL, NULL },
	{ NULL, NULL, NULL },
};

FP_MODULE("nullfn", tasks);
