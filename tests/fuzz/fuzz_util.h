/*
 * What every fuzz target shares: the libFuzzer entry point's prototype, a
 * hash of the input, and the way an input is cut into reads. A stream
 * reader (the HTTP connection, the frame reader) must give the same answer
 * however its bytes arrive, so each input is fed in a few pieces whose
 * sizes come from its own hash: the same input is always cut the same way
 * (a finding replays), and a mutation that changes a byte moves the cuts.
 */
#ifndef FP_FUZZ_UTIL_H
#define FP_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FNV-1a, 64 bits. */
static inline uint64_t fuzz_hash(const uint8_t *data, size_t size)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < size; i++) {
		h ^= data[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/*
 * Cuts of an input into at most 4 reads: fuzz_cuts_next() gives the next
 * read's length, 0 when all is given. A quarter of the inputs go whole, the
 * others in 2 to 4 pieces, some of them a byte long.
 */
struct fuzz_cuts {
	uint64_t h;
	size_t left;
	unsigned pieces;
};

static inline void fuzz_cuts_init(struct fuzz_cuts *c, const uint8_t *data, size_t size)
{
	c->h = fuzz_hash(data, size);
	c->left = size;
	c->pieces = 1 + (unsigned)(c->h & 3);
	c->h >>= 2;
}

static inline size_t fuzz_cuts_next(struct fuzz_cuts *c)
{
	size_t n;

	if (!c->left)
		return 0;
	if (c->pieces <= 1) {
		n = c->left;
	} else {
		c->h = c->h * 6364136223846793005ull + 1442695040888963407ull;
		/* One piece in four is a single byte: the parser's every state between reads. */
		n = (c->h >> 62) == 0 ? 1 : 1 + (size_t)((c->h >> 16) % c->left);
		c->pieces--;
	}
	if (n > c->left)
		n = c->left;
	c->left -= n;
	return n;
}

/* A broken invariant: libFuzzer records the input as a crash. */
#define FUZZ_CHECK(cond)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__,    \
				__LINE__, #cond);                                     \
			abort();                                                      \
		}                                                                     \
	} while (0)

#endif
