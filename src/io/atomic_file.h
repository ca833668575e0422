/*
 * atomic_file.h - write a file so that readers see either the old content or
 * the complete new one: a temporary file in the same directory, then fflush,
 * fsync, rename over the target and fsync of the directory.
 */
#ifndef LSPO_ATOMIC_FILE_H
#define LSPO_ATOMIC_FILE_H

#include <stdio.h>

struct atomic_file {
	FILE *fp;      /* write here between atomic_open and atomic_commit */
	char *path;    /* final name */
	char *tmp;     /* temporary name, same directory */
};

/* Creates the temporary file next to `path`.  LSPO_EIO naming the file. */
int atomic_open(const char *path, struct atomic_file *af);
/* Flushes, syncs and renames onto the final name; on any failure removes
 * the temporary file.  Frees af in every case. */
int atomic_commit(struct atomic_file *af);
/* Closes and removes the temporary file; frees af.  Safe after a failed open. */
void atomic_abort(struct atomic_file *af);
/* Writes n bytes; LSPO_EIO naming the final file on a short write. */
int atomic_write(struct atomic_file *af, const void *data, size_t n);

#endif
