/*
 * fp_version(): the release this library was built as, so that a program can
 * tell the library it runs with from the headers it was compiled against.
 */
#include <forkpool.h>

const char *fp_version(void)
{
	return FP_VERSION;
}
