/* The items read as they are sent (upload.h). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "upload.h"

int cli_upload_open(struct cli_upload *u, const char *path)
{
	struct stat st;
	off_t at;

	memset(u, 0, sizeof(*u));
	u->size = -1;
	if (!path || !strcmp(path, "-")) {
		u->fd = STDIN_FILENO;
		u->name = "stdin";
	} else {
		u->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (u->fd < 0)
			return -errno;
		u->own = 1;
		u->name = path;
	}
	/* A file's length from where it is read (stdin may be a file part read). */
	if (fstat(u->fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (at = lseek(u->fd, 0, SEEK_CUR)) >= 0 && at <= st.st_size)
		u->size = st.st_size - at;
	else if (fstat(u->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		cli_upload_deinit(u);
		return -EISDIR;
	}
	return 0;
}

void cli_upload_deinit(struct cli_upload *u)
{
	if (u->own && u->fd >= 0)
		close(u->fd);
	u->fd = -1;
	u->own = 0;
}

size_t cli_upload_read(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct cli_upload *u = userdata;
	size_t want = size * nitems;
	ssize_t n;

	/* A known length is promised in Content-Length: never send more. */
	if (u->size >= 0 && (uint64_t)u->size - u->sent < want)
		want = (size_t)((uint64_t)u->size - u->sent);
	if (!want) {
		u->eof = 1;
		return 0;
	}
	do
		n = read(u->fd, buf, want);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		u->err = -errno;
		return CURL_READFUNC_ABORT;
	}
	if (n == 0 && u->size >= 0 && u->sent < (uint64_t)u->size) {
		/* The file shrank while it was sent: the length said is a lie now. */
		u->err = -EIO;
		return CURL_READFUNC_ABORT;
	}
	u->sent += (uint64_t)n;
	u->eof = n == 0;
	return (size_t)n;
}
