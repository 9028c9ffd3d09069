/*
 * CRC32C (Castagnoli), the journal's record checksum: the polynomial of
 * iSCSI, ext4 and LevelDB's logs, with hardware support on x86 (SSE4.2
 * crc32) and arm64. Owns the arithmetic only; journal_format.c decides what
 * it covers.
 */
#ifndef FP_SERVER_JOURNAL_CRC_H
#define FP_SERVER_JOURNAL_CRC_H

#include <stddef.h>
#include <stdint.h>

/*
 * The CRC32C of buf[0..len) continuing from `crc` (0 to start): so
 * fp_crc32c(fp_crc32c(0, a, n), b, m) is the CRC of a followed by b.
 * fp_crc32c(0, "123456789", 9) is 0xe3069283.
 */
uint32_t fp_crc32c(uint32_t crc, const void *buf, size_t len);

/* The two ways, for tests: the table always; the instruction when present. */
uint32_t fp__crc32c_table(uint32_t crc, const void *buf, size_t len);
/* 1 if fp__crc32c_hw() may be called on this CPU. */
int fp__crc32c_hw_available(void);
uint32_t fp__crc32c_hw(uint32_t crc, const void *buf, size_t len);

#endif
