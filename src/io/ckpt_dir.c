/*
 * ckpt_dir.c - checkpoint directories as the unit of safety: every save goes
 * to a fresh hidden directory OUT/.tmp-step-N.PID, is fsynced, described by a
 * manifest (size and CRC-32C of every file, the caller's run description),
 * renamed to OUT/step-NNNNNNNN and published by swapping the symlink
 * OUT/latest; so whatever the moment of a kill, OUT/latest names a complete
 * checkpoint.  OUT is locked (flock) while a run saves into it; the next run
 * removes what a killed save left.  This file knows nothing of models: it
 * checksums the files it is told about and stores the caller's JSON.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nmmintrin.h>

#include "internal.h"
#include "atomic_file.h"
#include "safetensors.h"

#define MANIFEST "manifest.json"
#define LATEST "latest"
#define LOCK_FILE ".lock"
#define TMP_PREFIX ".tmp-"
#define MANIFEST_FORMAT "lspo-checkpoint"
#define MANIFEST_VERSION 1
#define MAX_FILES 64

/* ---------------------------------------------------------------------- */
/* CRC-32C (Castagnoli), SSE4.2 when the CPU has it, else a table          */

static uint32_t crc_table[256];

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
}

__attribute__((target("sse4.2")))
static uint32_t crc_sse42(uint32_t c, const unsigned char *p, size_t n)
{
	uint64_t c64 = c;
	for (; n >= 8; n -= 8, p += 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c64 = _mm_crc32_u64(c64, w);
	}
	c = (uint32_t)c64;
	for (; n; n--, p++)
		c = _mm_crc32_u8(c, *p);
	return c;
}

uint32_t lspo_crc32c(uint32_t crc, const void *data, size_t n)
{
	const unsigned char *p = data;
	uint32_t c = ~crc;
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc_sse42(c, p, n);
	if (!crc_table[1])
		crc_table_init();
	for (size_t i = 0; i < n; i++)
		c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
	return ~c;
}

int lspo_file_crc32c(const char *path, uint32_t *crc, uint64_t *bytes)
{
	int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		LSPO_FAIL(LSPO_EIO, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		LSPO_FAIL(LSPO_EIO, "%s: not a regular file", path);
	}
	enum { CHUNK = 1 << 20 };
	unsigned char *buf = malloc(CHUNK);
	if (!buf) {
		close(fd);
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", path);
	}
	uint32_t c = 0;
	uint64_t total = 0;
	int rc = LSPO_OK;
	for (;;) {
		ssize_t got = read(fd, buf, CHUNK);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			lspo_error("%s: read failed: %s", path, strerror(errno));
			rc = LSPO_EIO;
			break;
		}
		if (got == 0)
			break;
		c = lspo_crc32c(c, buf, (size_t)got);
		total += (uint64_t)got;
	}
	free(buf);
	close(fd);
	if (!rc) {
		*crc = c;
		*bytes = total;
	}
	return rc;
}

/* ---------------------------------------------------------------------- */
/* small file-system helpers                                              */

static char *path_join(const char *dir, const char *name)
{
	char *p;
	return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

static int sync_path(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || fsync(fd) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		LSPO_FAIL(LSPO_EIO, "%s: cannot sync the directory: %s", dir, strerror(e));
	}
	close(fd);
	return LSPO_OK;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int r = flag == FTW_DP ? rmdir(path) : unlink(path);
	if (r != 0 && errno != ENOENT)
		lspo_warn("%s: cannot remove: %s", path, strerror(errno));
	return 0;
}

/* rm -rf of one entry (never follows symlinks). */
static void remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* "step-00000012" -> 12, else -1. */
static long step_of_name(const char *name)
{
	if (strncmp(name, "step-", 5) != 0 || !name[5])
		return -1;
	long v = 0;
	for (const char *p = name + 5; *p; p++) {
		if (*p < '0' || *p > '9' || v > (1L << 40))
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

static int mkdir_p(const char *dir)
{
	char *p = strdup(dir);
	if (!p)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", dir);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			if (mkdir(p, 0777) != 0 && errno != EEXIST) {
				lspo_error("%s: cannot create directory %s: %s", dir, p, strerror(errno));
				free(p);
				return LSPO_EIO;
			}
			*s = '/';
		}
	free(p);
	if (mkdir(dir, 0777) != 0 && errno != EEXIST)
		LSPO_FAIL(LSPO_EIO, "%s: cannot create the directory: %s", dir, strerror(errno));
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		LSPO_FAIL(LSPO_EIO, "%s: not a directory", dir);
	return LSPO_OK;
}

/* ---------------------------------------------------------------------- */
/* saving                                                                 */

struct lspo_ckpt_dir {
	char *out;
	int lock_fd;
	int keep;
	long step;       /* of the save in progress, or -1 */
	char *tmp;       /* its directory */
};

/* Removes what killed saves left: OUT/.tmp-* entries and step directories
 * newer than the published one (renamed, never published). */
static void clean_out(struct lspo_ckpt_dir *d)
{
	long latest = -1;
	char *lp = path_join(d->out, LATEST), target[256];
	ssize_t n = lp ? readlink(lp, target, sizeof(target) - 1) : -1;
	if (n > 0) {
		target[n] = '\0';
		latest = step_of_name(target);
	}
	free(lp);
	DIR *dir = opendir(d->out);
	if (!dir)
		return;
	struct dirent *e;
	while ((e = readdir(dir))) {
		long s = step_of_name(e->d_name);
		int tmp = !strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) || strstr(e->d_name, ".tmp.");
		if (!tmp && !(s >= 0 && s > latest))
			continue;
		char *p = path_join(d->out, e->d_name);
		if (p) {
			lspo_info("%s: removing %s left by an interrupted save", d->out, e->d_name);
			remove_tree(p);
		}
		free(p);
	}
	closedir(dir);
}

int lspo_ckptdir_open(const char *out, int keep, struct lspo_ckpt_dir **res)
{
	*res = NULL;
	if (keep < 1)
		LSPO_FAIL(LSPO_EINVAL, "%s: keep must be at least 1, got %d", out, keep);
	int rc = mkdir_p(out);
	if (rc)
		return rc;
	/* refuse a directory holding a checkpoint that saves did not write:
	 * its config.json / model.safetensors would be replaced by links */
	static const char *const own[] = { "config.json", "model.safetensors", "train_state.safetensors" };
	for (int i = 0; i < 3; i++) {
		char *p = path_join(out, own[i]), target[256];
		struct stat st;
		int foreign = 0;
		if (p && lstat(p, &st) == 0) {   /* ours: a link through latest/ */
			ssize_t n = S_ISLNK(st.st_mode) ? readlink(p, target, sizeof(target) - 1) : -1;
			if (n >= 0)
				target[n] = '\0';
			foreign = n < 0 || strncmp(target, LATEST "/", strlen(LATEST) + 1) != 0;
		}
		free(p);
		if (foreign)
			LSPO_FAIL(LSPO_EINVAL, "%s: holds %s that lspo's saves did not write (a checkpoint "
			          "made by init or by hand?): save into another directory", out, own[i]);
	}
	struct lspo_ckpt_dir *d = calloc(1, sizeof(*d));
	char *lock = path_join(out, LOCK_FILE);
	if (!d || !lock || !(d->out = strdup(out))) {
		free(lock);
		if (d)
			free(d->out);
		free(d);
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", out);
	}
	d->keep = keep;
	d->step = -1;
	d->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (d->lock_fd < 0) {
		lspo_error("%s: cannot create %s: %s (is the directory writable?)", out, lock, strerror(errno));
		rc = LSPO_EIO;
	} else if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		lspo_error("%s: another lspo run is saving into this directory (it holds %s)", out, lock);
		rc = LSPO_EBUSY;
	}
	free(lock);
	if (rc) {
		lspo_ckptdir_close(d);
		return rc;
	}
	clean_out(d);
	*res = d;
	return LSPO_OK;
}

void lspo_ckptdir_close(struct lspo_ckpt_dir *d)
{
	if (!d)
		return;
	if (d->tmp)
		lspo_ckptdir_abort(d);
	if (d->lock_fd >= 0)
		close(d->lock_fd);   /* releases the lock */
	free(d->out);
	free(d);
}

int lspo_ckptdir_begin(struct lspo_ckpt_dir *d, long step, const char **tmpdir)
{
	if (d->tmp)
		lspo_ckptdir_abort(d);
	if (step < 0)
		LSPO_FAIL(LSPO_EINVAL, "%s: step %ld is negative", d->out, step);
	if (asprintf(&d->tmp, "%s/" TMP_PREFIX "step-%08ld.%ld", d->out, step, (long)getpid()) < 0) {
		d->tmp = NULL;
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", d->out);
	}
	remove_tree(d->tmp);
	if (mkdir(d->tmp, 0777) != 0) {
		lspo_error("%s: cannot create the directory: %s", d->tmp, strerror(errno));
		free(d->tmp);
		d->tmp = NULL;
		return LSPO_EIO;
	}
	d->step = step;
	*tmpdir = d->tmp;
	return LSPO_OK;
}

void lspo_ckptdir_abort(struct lspo_ckpt_dir *d)
{
	if (!d || !d->tmp)
		return;
	remove_tree(d->tmp);
	free(d->tmp);
	d->tmp = NULL;
	d->step = -1;
}

static int write_text(const char *path, const char *text)
{
	struct atomic_file af;
	int rc = atomic_open(path, &af);
	if (rc)
		return rc;
	rc = atomic_write(&af, text, strlen(text));
	if (!rc)
		rc = atomic_write(&af, "\n", 1);
	if (rc) {
		atomic_abort(&af);
		return rc;
	}
	return atomic_commit(&af);
}

static int valid_file_name(const char *name)
{
	return name && *name && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..")
	       && strcmp(name, MANIFEST) && strlen(name) < 200;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

/* The manifest of the files in `dir`: sizes and checksums, the run. */
static int make_manifest(const char *dir, long step, const char *const *files, int nfiles,
                         const char *run_json, char **text)
{
	json_error_t err;
	json_t *run = run_json ? json_loads(run_json, 0, &err) : json_object();
	if (!run || !json_is_object(run)) {
		json_decref(run);
		LSPO_FAIL(LSPO_EINVAL, "%s: the run description is not a JSON object", dir);
	}
	json_t *root = json_pack("{s:s, s:i, s:I, s:[], s:o}", "format", MANIFEST_FORMAT, "version",
	                         MANIFEST_VERSION, "step", (json_int_t)step, "files", "run", run);
	if (!root)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", dir);
	json_t *list = json_object_get(root, "files");
	int rc = LSPO_OK;
	for (int i = 0; i < nfiles && !rc; i++) {
		if (!valid_file_name(files[i])) {
			lspo_error("%s: '%s' cannot be a checkpoint file name", dir, files[i]);
			rc = LSPO_EINVAL;
			break;
		}
		char *p = path_join(dir, files[i]), hex[16];
		uint32_t crc;
		uint64_t bytes;
		rc = p ? lspo_file_crc32c(p, &crc, &bytes) : LSPO_ENOMEM;
		if (!rc && ends_with(files[i], ".safetensors"))
			rc = lspo_st_check_finite(p);
		free(p);
		if (rc)
			break;
		snprintf(hex, sizeof(hex), "%08x", crc);
		json_array_append_new(list, json_pack("{s:s, s:I, s:s}", "name", files[i], "bytes",
		                                      (json_int_t)bytes, "crc32c", hex));
	}
	*text = rc ? NULL : json_dumps(root, JSON_INDENT(2));
	json_decref(root);
	if (!rc && !*text)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", dir);
	return rc;
}

/* Points OUT/<link> at `target` by a rename over it. */
static int swap_link(const char *out, const char *link, const char *target)
{
	char *tmp = NULL, *dst = path_join(out, link);
	if (!dst || asprintf(&tmp, "%s/" TMP_PREFIX "%s.%ld", out, link, (long)getpid()) < 0) {
		free(dst);
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", out);
	}
	unlink(tmp);
	int rc = LSPO_OK;
	if (symlink(target, tmp) != 0 || rename(tmp, dst) != 0) {
		lspo_error("%s: cannot point %s at %s: %s", out, link, target, strerror(errno));
		unlink(tmp);
		rc = LSPO_EIO;
	}
	free(tmp);
	free(dst);
	return rc;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/* Keeps the d->keep newest step directories up to `step`; removes the rest
 * and every newer one (an abandoned continuation). */
static void prune(struct lspo_ckpt_dir *d, long step)
{
	DIR *dir = opendir(d->out);
	if (!dir)
		return;
	long *steps = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(dir))) {
		long s = step_of_name(e->d_name);
		if (s < 0)
			continue;
		if (n == cap) {
			long *t = realloc(steps, (cap = cap ? 2 * cap : 16) * sizeof(long));
			if (!t)
				break;
			steps = t;
		}
		steps[n++] = s;
	}
	closedir(dir);
	if (steps)
		qsort(steps, n, sizeof(long), cmp_long);
	size_t kept = 0;
	for (size_t i = n; i-- > 0;) {
		if (steps[i] <= step && kept < (size_t)d->keep) {
			kept++;
			continue;
		}
		char *p;
		if (asprintf(&p, "%s/step-%08ld", d->out, steps[i]) >= 0) {
			remove_tree(p);
			free(p);
		}
	}
	free(steps);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The regular files of `dir` but the manifest, sorted; NULL-terminated. */
static int list_files(const char *dir, char ***names, int *n)
{
	*names = NULL;
	*n = 0;
	DIR *dp = opendir(dir);
	if (!dp)
		LSPO_FAIL(LSPO_EIO, "%s: cannot list: %s", dir, strerror(errno));
	char **v = calloc(MAX_FILES + 2, sizeof(char *));
	struct dirent *e;
	int rc = v ? LSPO_OK : LSPO_ENOMEM;
	while (!rc && (e = readdir(dp))) {
		char *p = path_join(dir, e->d_name);
		struct stat st;
		int regular = p && lstat(p, &st) == 0 && S_ISREG(st.st_mode) && strcmp(e->d_name, MANIFEST)
		              && !strstr(e->d_name, ".tmp.");
		free(p);
		if (!regular)
			continue;
		if (*n == MAX_FILES) {
			lspo_error("%s: more than %d files", dir, MAX_FILES);
			rc = LSPO_EINVAL;
		} else if (!(v[(*n)++] = strdup(e->d_name))) {
			rc = LSPO_ENOMEM;
		}
	}
	closedir(dp);
	if (!rc)
		qsort(v, (size_t)*n, sizeof(char *), cmp_name);
	*names = v;
	return rc;
}

static void free_names(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

int lspo_ckptdir_commit(struct lspo_ckpt_dir *d, const char *const *files, int nfiles, const char *run_json)
{
	if (!d->tmp)
		LSPO_FAIL(LSPO_EINVAL, "%s: commit without a save in progress", d->out);
	if (!files) {   /* every file written */
		char **all;
		int n, rc = list_files(d->tmp, &all, &n);
		if (!rc)
			rc = lspo_ckptdir_commit(d, (const char *const *)all, n, run_json);
		else
			lspo_ckptdir_abort(d);
		free_names(all);
		return rc;
	}
	if (nfiles < 1 || nfiles > MAX_FILES)
		LSPO_FAIL(LSPO_EINVAL, "%s: a checkpoint lists 1 to %d files, got %d", d->out, MAX_FILES, nfiles);
	char *text = NULL, *mpath = path_join(d->tmp, MANIFEST), *final = NULL, name[32];
	snprintf(name, sizeof(name), "step-%08ld", d->step);
	final = path_join(d->out, name);
	int rc = mpath && final ? LSPO_OK : LSPO_ENOMEM;
	if (!rc)
		rc = make_manifest(d->tmp, d->step, files, nfiles, run_json, &text);
	if (!rc)
		rc = write_text(mpath, text);
	if (!rc)
		rc = sync_path(d->tmp);
	if (!rc) {
		char *lp = path_join(d->out, LATEST), cur[256];
		ssize_t n = lp ? readlink(lp, cur, sizeof(cur) - 1) : -1;
		free(lp);
		if (n > 0 && (size_t)n == strlen(name) && !memcmp(cur, name, (size_t)n)) {
			/* this step is the published checkpoint already: keep it */
			lspo_info("%s: %s is published already; the new copy is dropped", d->out, name);
			lspo_ckptdir_abort(d);
			free(text);
			free(mpath);
			free(final);
			return LSPO_OK;
		}
		remove_tree(final);   /* an unpublished or abandoned save of the same step */
		if (rename(d->tmp, final) != 0) {
			lspo_error("%s: cannot rename %s to %s: %s", d->out, d->tmp, final, strerror(errno));
			rc = LSPO_EIO;
		}
	}
	if (!rc)
		rc = sync_path(d->out);
	if (!rc)
		rc = swap_link(d->out, LATEST, name);
	/* links for readers of OUT as a plain checkpoint (HF tools, --model OUT);
	 * never over a regular file */
	for (int k = 0; k < nfiles && !rc; k++) {
		char *p = path_join(d->out, files[k]), *target = path_join(LATEST, files[k]);
		struct stat st;
		if (!p || !target)
			rc = LSPO_ENOMEM;
		else if (lstat(p, &st) == 0 && !S_ISLNK(st.st_mode))   /* open refused the model's */
			lspo_warn("%s: %s is a regular file: not replaced by a link to the latest checkpoint",
			          d->out, files[k]);
		else
			rc = swap_link(d->out, files[k], target);
		free(p);
		free(target);
	}
	if (!rc)
		rc = sync_path(d->out);
	if (rc) {
		lspo_ckptdir_abort(d);
	} else {
		free(d->tmp);
		d->tmp = NULL;
		prune(d, d->step);
		d->step = -1;
	}
	free(text);
	free(mpath);
	free(final);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* reading                                                                */

int lspo_ckpt_resolve(const char *dir, char **path, long *step)
{
	*path = NULL;
	*step = -1;
	struct stat st;
	if (stat(dir, &st) != 0)
		return LSPO_OK;
	if (!S_ISDIR(st.st_mode))
		LSPO_FAIL(LSPO_EINVAL, "%s: not a directory", dir);
	char *lp = path_join(dir, LATEST), target[256];
	if (!lp)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", dir);
	ssize_t n = readlink(lp, target, sizeof(target) - 1);
	free(lp);
	if (n > 0) {
		target[n] = '\0';
		long s = step_of_name(target);
		if (s < 0 || strchr(target, '/'))
			LSPO_FAIL(LSPO_EFORMAT, "%s/" LATEST ": points at '%s', expected step-NNNNNNNN", dir, target);
		*path = path_join(dir, target);
		*step = s;
		return *path ? LSPO_OK : LSPO_ENOMEM;
	}
	char *mp = path_join(dir, MANIFEST), *cp = path_join(dir, "config.json");
	int has = mp && cp && (access(mp, F_OK) == 0 || access(cp, F_OK) == 0);
	free(mp);
	free(cp);
	if (has && !(*path = strdup(dir)))
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", dir);
	return LSPO_OK;
}

static int manifest_error(const char *path, const char *what)
{
	LSPO_FAIL(LSPO_EFORMAT, "%s: %s", path, what);
}

int lspo_ckpt_verify(const char *dir, long *step, char **run_json)
{
	if (run_json)
		*run_json = NULL;
	char *mpath = path_join(dir, MANIFEST);
	if (!mpath)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", dir);
	json_error_t err;
	json_t *root = json_load_file(mpath, JSON_REJECT_DUPLICATES, &err);
	int rc = LSPO_OK;
	if (!root) {
		if (err.line < 0)
			lspo_error("%s: cannot read: %s", mpath, err.text);
		else
			lspo_error("%s: not valid JSON (line %d, column %d: %s)", mpath, err.line, err.column, err.text);
		free(mpath);
		return err.line < 0 ? LSPO_EIO : LSPO_EFORMAT;
	}
	json_t *fmt = json_object_get(root, "format"), *ver = json_object_get(root, "version");
	json_t *js = json_object_get(root, "step"), *files = json_object_get(root, "files");
	json_t *run = json_object_get(root, "run");
	if (!json_is_object(root) || !json_is_string(fmt) || strcmp(json_string_value(fmt), MANIFEST_FORMAT))
		rc = manifest_error(mpath, "field 'format': expected \"" MANIFEST_FORMAT "\"");
	else if (!json_is_integer(ver) || json_integer_value(ver) != MANIFEST_VERSION)
		rc = manifest_error(mpath, "field 'version': expected 1");
	else if (!json_is_integer(js) || json_integer_value(js) < 0 || json_integer_value(js) > (1LL << 40))
		rc = manifest_error(mpath, "field 'step': expected an integer in [0, 2^40]");
	else if (!json_is_array(files) || json_array_size(files) < 1 || json_array_size(files) > MAX_FILES)
		rc = manifest_error(mpath, "field 'files': expected an array of 1 to 64 files");
	else if (run && !json_is_object(run))
		rc = manifest_error(mpath, "field 'run': expected an object");
	for (size_t i = 0; !rc && i < json_array_size(files); i++) {
		json_t *f = json_array_get(files, i);
		json_t *jn = json_object_get(f, "name"), *jb = json_object_get(f, "bytes");
		json_t *jc = json_object_get(f, "crc32c");
		const char *name = json_string_value(jn), *hex = json_string_value(jc);
		char *end;
		unsigned long want_crc = hex ? strtoul(hex, &end, 16) : 0;
		if (!json_is_object(f) || !valid_file_name(name) || !json_is_integer(jb)
		    || json_integer_value(jb) < 0 || !hex || strlen(hex) != 8 || *end) {
			lspo_error("%s: field 'files' entry %zu: expected {\"name\": a plain file name, "
			           "\"bytes\": an integer >= 0, \"crc32c\": 8 hex digits}", mpath, i);
			rc = LSPO_EFORMAT;
			break;
		}
		char *p = path_join(dir, name);
		uint32_t crc;
		uint64_t bytes;
		rc = p ? lspo_file_crc32c(p, &crc, &bytes) : LSPO_ENOMEM;
		if (rc == LSPO_EIO)
			lspo_error("%s: lists %s, which is missing or unreadable", mpath, name);
		else if (!rc && bytes != (uint64_t)json_integer_value(jb)) {
			lspo_error("%s: %s has %llu bytes, the manifest says %lld: the checkpoint is damaged "
			           "or mixed with another", dir, name, (unsigned long long)bytes,
			           (long long)json_integer_value(jb));
			rc = LSPO_EFORMAT;
		} else if (!rc && crc != (uint32_t)want_crc) {
			lspo_error("%s: %s has CRC-32C %08x, the manifest says %s: the checkpoint is damaged "
			           "or mixed with another", dir, name, crc, hex);
			rc = LSPO_EFORMAT;
		}
		free(p);
	}
	if (!rc && step)
		*step = (long)json_integer_value(js);
	if (!rc && run_json && !(*run_json = json_dumps(run ? run : json_object(), JSON_COMPACT | JSON_SORT_KEYS))) {
		lspo_error("%s: out of memory", mpath);
		rc = LSPO_ENOMEM;
	}
	json_decref(root);
	free(mpath);
	return rc;
}

int lspo_st_check_finite(const char *path)
{
	struct st_file *f;
	int rc = st_open(path, &f);
	if (rc)
		return rc;
	for (size_t k = 0; k < f->ntensors && !rc; k++) {
		const struct st_tensor *t = &f->tensors[k];
		if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
			continue;
		size_t n = st_numel(t);
		float *x = malloc((n ? n : 1) * sizeof(float));
		if (!x) {
			lspo_error("%s: out of memory reading tensor '%s'", path, t->name);
			rc = LSPO_ENOMEM;
			break;
		}
		rc = st_read_f32(f, t, x);
		for (size_t i = 0; !rc && i < n; i++)
			if (!isfinite(x[i])) {
				lspo_error("%s: tensor '%s' holds a non-finite value (%g at element %zu)", path,
				           t->name, (double)x[i], i);
				rc = LSPO_EFORMAT;
			}
		free(x);
	}
	st_close(f);
	return rc;
}
