/* A module whose task table has only its terminator. */
#include "forkpool/task.h"

static const struct fp_task tasks[] = {
	{ NULL, NULL, NULL },
};

FP_MODULE("empty", tasks);
