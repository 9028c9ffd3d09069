/*
 * forkpoold's secrets: the bearer token from --token-file and Redis's
 * password from --cluster-auth-file, each file's permissions checked, since
 * a secret others can read is no secret.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* A token is one short line; a larger file is not a token file. */
#define TOKEN_MAX 4096

/*
 * Group or others may read it (the secret is out) or write it (anyone may
 * set the token): either way it is not the owner's alone. Checked on the
 * open file, so it is the file that was read.
 */
static int check_mode(const struct fp_config *c, const char *flag, const char *path, int fd,
		      char *warn, size_t warnlen, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s %s: cannot stat it: %s", flag, path, strerror(errno));
		return -errno;
	}
	if (!(st.st_mode & (S_IRWXG | S_IRWXO)))
		return 0;
	if (c->strict_perms) {
		snprintf(err, errlen, "%s %s: readable or writable by group or others"
			 " (mode %04o), and --strict-perms is set; make it private with chmod 600 %s",
			 flag, path, (unsigned)(st.st_mode & 07777), path);
		return -EPERM;
	}
	snprintf(warn, warnlen, "%s %s: readable or writable by group or others"
		 " (mode %04o); make it private with chmod 600 %s (--strict-perms refuses to"
		 " start instead)", flag, path, (unsigned)(st.st_mode & 07777), path);
	return 0;
}

/* The token in buf[0..len): without surrounding blanks, one word. */
static int token_text(char *buf, size_t len, char **out, const char *flag, const char *path,
		      const char *what, char *err, size_t errlen)
{
	char *s, *e;

	if (len >= TOKEN_MAX) {
		snprintf(err, errlen, "%s %s: the file is over %d bytes; a %s is one"
			 " short line", flag, path, TOKEN_MAX, what);
		return -EINVAL;
	}
	buf[len] = '\0';
	for (s = buf; isspace((unsigned char)*s); s++)
		;
	for (e = buf + len; e > s && isspace((unsigned char)e[-1]); e--)
		;
	*e = '\0';
	if (s == e) {
		snprintf(err, errlen, "%s %s: the file is empty; put the %s in it",
			 flag, path, what);
		return -EINVAL;
	}
	for (char *p = s; p < e; p++) {
		if (iscntrl((unsigned char)*p) || *p == ' ') {
			snprintf(err, errlen, "%s %s: the %s must be one word with no"
				 " blanks or control characters", flag, path, what);
			return -EINVAL;
		}
	}
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static int read_secret(const struct fp_config *c, const char *flag, const char *path,
		       const char *what, char **token, char *warn, size_t warnlen,
		       char *err, size_t errlen)
{
	char buf[TOKEN_MAX + 1];
	size_t len = 0;
	ssize_t n;
	int fd, r;

	*token = NULL;
	if (warnlen)
		warn[0] = '\0';
	if (errlen)
		err[0] = '\0';
	if (!path)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s %s: cannot read it: %s", flag, path, strerror(-r));
		return r;
	}
	r = check_mode(c, flag, path, fd, warn, warnlen, err, errlen);
	while (r == 0 && len < sizeof(buf) - 1) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s %s: cannot read it: %s", flag, path,
				 strerror(errno));
			r = -EIO;
		}
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (r == 0)
		r = token_text(buf, len, token, flag, path, what, err, errlen);
	/* A secret: no copy of it stays on the stack. */
	explicit_bzero(buf, sizeof(buf));
	return r;
}

int fp_config_read_token(const struct fp_config *c, char **token, char *warn, size_t warnlen,
			 char *err, size_t errlen)
{
	return read_secret(c, "--token-file", c->token_file, "bearer token", token, warn,
			   warnlen, err, errlen);
}

int fp_config_read_cluster_password(const struct fp_config *c, char **password, char *warn,
				    size_t warnlen, char *err, size_t errlen)
{
	return read_secret(c, "--cluster-auth-file", c->cluster_auth_file, "password",
			   password, warn, warnlen, err, errlen);
}
