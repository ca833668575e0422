/* mapped_file.c - read-only memory maps of input files. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "mapped_file.h"

int mapped_file_open(const char *path, size_t min_size, const char *what, void **map, size_t *size)
{
	*map = NULL;
	*size = 0;
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		LSPO_FAIL(LSPO_EIO, "%s: cannot open: %s", path, strerror(e));
	}
	int rc = LSPO_OK;
	if (!S_ISREG(st.st_mode)) {
		lspo_error("%s: not a regular file", path);
		rc = LSPO_EIO;
	} else if ((size_t)st.st_size < min_size) {
		lspo_error("%s: %s: %lld bytes, expected at least %zu", path, what, (long long)st.st_size,
		           min_size);
		rc = LSPO_EFORMAT;
	} else {
		void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			lspo_error("%s: cannot map %lld bytes: %s", path, (long long)st.st_size, strerror(errno));
			rc = LSPO_EIO;
		} else {
			*map = m;
			*size = (size_t)st.st_size;
		}
	}
	close(fd);
	return rc;
}

void mapped_file_close(void *map, size_t size)
{
	if (map)
		munmap(map, size);
}
