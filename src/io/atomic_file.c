/* atomic_file.c - crash-safe file replacement (temporary file + rename). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "atomic_file.h"

static void af_free(struct atomic_file *af)
{
	free(af->path);
	free(af->tmp);
	memset(af, 0, sizeof(*af));
}

int atomic_open(const char *path, struct atomic_file *af)
{
	memset(af, 0, sizeof(*af));
	size_t n = strlen(path);
	af->path = strdup(path);
	af->tmp = malloc(n + 16);
	if (!af->path || !af->tmp) {
		af_free(af);
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", path);
	}
	snprintf(af->tmp, n + 16, "%s.tmp.XXXXXX", path);
	int fd = mkstemp(af->tmp);
	if (fd < 0) {
		int e = errno;
		af_free(af);
		LSPO_FAIL(LSPO_EIO, "%s: cannot create a temporary file next to it: %s", path, strerror(e));
	}
	(void)fchmod(fd, 0644); /* mkstemp makes 0600; checkpoints are ordinary files */
	af->fp = fdopen(fd, "wb");
	if (!af->fp) {
		int e = errno;
		close(fd);
		unlink(af->tmp);
		af_free(af);
		LSPO_FAIL(LSPO_EIO, "%s: fdopen: %s", path, strerror(e));
	}
	return LSPO_OK;
}

int atomic_write(struct atomic_file *af, const void *data, size_t n)
{
	if (n && fwrite(data, 1, n, af->fp) != n)
		LSPO_FAIL(LSPO_EIO, "%s: write failed: %s", af->path, strerror(errno));
	return LSPO_OK;
}

void atomic_abort(struct atomic_file *af)
{
	if (af->fp)
		fclose(af->fp);
	if (af->tmp)
		unlink(af->tmp);
	af_free(af);
}

/* fsync of the directory holding `path`, so that the rename is durable. */
static int sync_dir(const char *path)
{
	char *dir = strdup(path);
	if (!dir)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	int rc = LSPO_OK;
	if (fd < 0 || fsync(fd) != 0) {
		lspo_error("%s: cannot sync directory %s: %s", path, dir, strerror(errno));
		rc = LSPO_EIO;
	}
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

int atomic_commit(struct atomic_file *af)
{
	const char *what = NULL;
	if (fflush(af->fp) != 0)
		what = "fflush";
	else if (fsync(fileno(af->fp)) != 0)
		what = "fsync";
	int e = errno;
	if (fclose(af->fp) != 0 && !what) {
		what = "fclose";
		e = errno;
	}
	af->fp = NULL;
	if (!what && rename(af->tmp, af->path) != 0) {
		what = "rename";
		e = errno;
	}
	if (what) {
		lspo_error("%s: %s failed: %s", af->path, what, strerror(e));
		atomic_abort(af);
		return LSPO_EIO;
	}
	int rc = sync_dir(af->path);
	af_free(af);
	return rc;
}
