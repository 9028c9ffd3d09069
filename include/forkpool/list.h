/*
 * <forkpool/list.h>: linking and unlinking in the intrusive doubly linked
 * lists that the engine and the daemon keep (waiters, watchers, calls,
 * workers, connections...). Here, in include/, because both layers use it and
 * server/ may include nothing of pool/; it is not installed: no part of the
 * embedding API, macros only, nothing exported.
 *
 * An element is any struct with `prev` and `next` pointers to its own type;
 * a list is its head pointer, and for the _TAIL forms also its tail pointer.
 * The macros are type-generic, so macros: each argument is evaluated more
 * than once, so pass plain names or member accesses without side effects.
 * Unlinking leaves elm's own prev and next as they were: a caller that tests
 * them later (or hands elm to a list again) clears them itself.
 */
#ifndef FORKPOOL_LIST_H
#define FORKPOOL_LIST_H

/* elm becomes the first element of the list at head. */
#define FP_LIST_PUSH(head, elm)                 \
	do {                                    \
		(elm)->prev = NULL;             \
		(elm)->next = (head);           \
		if (head)                       \
			(head)->prev = (elm);   \
		(head) = (elm);                 \
	} while (0)

/* elm, on the list at head, leaves it. */
#define FP_LIST_UNLINK(head, elm)                          \
	do {                                               \
		if ((elm)->prev)                           \
			(elm)->prev->next = (elm)->next;   \
		else                                       \
			(head) = (elm)->next;              \
		if ((elm)->next)                           \
			(elm)->next->prev = (elm)->prev;   \
	} while (0)

/* elm becomes the last element of the list at head and tail. */
#define FP_LIST_APPEND_TAIL(head, tail, elm)    \
	do {                                    \
		(elm)->next = NULL;             \
		(elm)->prev = (tail);           \
		if (tail)                       \
			(tail)->next = (elm);   \
		else                            \
			(head) = (elm);         \
		(tail) = (elm);                 \
	} while (0)

/* elm, on the list at head and tail, leaves it. */
#define FP_LIST_UNLINK_TAIL(head, tail, elm)       \
	do {                                       \
		if (!(elm)->next)                  \
			(tail) = (elm)->prev;      \
		FP_LIST_UNLINK(head, elm);         \
	} while (0)

#endif
