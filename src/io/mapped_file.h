/*
 * mapped_file.h - read-only memory maps of input files (checkpoints, token
 * shards), with the checks every reader needs: a regular file, at least as
 * long as its fixed header.
 */
#ifndef LSPO_MAPPED_FILE_H
#define LSPO_MAPPED_FILE_H

#include <stddef.h>

/* Maps `path` read-only into *map (*size bytes).  LSPO_EIO naming the file if
 * it cannot be opened, is not a regular file or cannot be mapped;
 * LSPO_EFORMAT if it holds fewer than min_size bytes, the message saying
 * "<path>: <what>: N bytes, expected at least min_size". */
int mapped_file_open(const char *path, size_t min_size, const char *what, void **map, size_t *size);
/* Unmaps what mapped_file_open mapped; NULL is a no-op. */
void mapped_file_close(void *map, size_t size);

#endif
