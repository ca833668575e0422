/*
 * test_ckpt_dir.c - checkpoint directories through the library API: a save
 * publishes a complete step directory with a manifest that verifies; a
 * failed save (non-finite weights, a missing file, a bad name) leaves the
 * published checkpoint and no temporary file; --keep prunes; the lock
 * refuses a second writer; damaged files are named; the next open removes
 * what a killed save left; CRC-32C has its standard check value.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

static char out[1024];
static const struct lspo_model_config cfg = { .vocab_size = 16, .n_positions = 8, .n_embd = 8, .n_layer = 1,
                                              .n_head = 2 };
static float *params;
static size_t nparams;

static int exists(const char *fmt, const char *a)
{
	char p[8192];
	snprintf(p, sizeof(p), fmt, out, a);
	struct stat st;
	return lstat(p, &st) == 0;
}

/* Entries of OUT whose name starts with `prefix`. */
static int count(const char *prefix)
{
	DIR *d = opendir(out);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += !strncmp(e->d_name, prefix, strlen(prefix));
	if (d)
		closedir(d);
	return n;
}

static long latest(void)
{
	char *path = NULL;
	long step = -1;
	if (lspo_ckpt_resolve(out, &path, &step) != LSPO_OK)
		return -2;
	free(path);
	return step;
}

/* One save of `step`: the model, plus a note; `nan` poisons a weight. */
static int save(struct lspo_ckpt_dir *d, long step, int nan, const char *extra)
{
	const char *tmp;
	int rc = lspo_ckptdir_begin(d, step, &tmp);
	if (rc)
		return rc;
	float keep = params[3];
	if (nan)
		params[3] = NAN;
	rc = lspo_ckpt_save(tmp, &cfg, params);
	params[3] = keep;
	char note[8192];
	snprintf(note, sizeof(note), "%s/notes.txt", tmp);
	FILE *f = fopen(note, "w");
	if (!f || fprintf(f, "step %ld\n", step) < 0 || fclose(f))
		rc = LSPO_EIO;
	const char *files[] = { "config.json", "model.safetensors", "notes.txt", extra };
	if (!rc)
		rc = lspo_ckptdir_commit(d, files, extra ? 4 : 3, "{\"trajectory\": {\"batch\": 4}}");
	return rc;
}

int main(void)
{
	const char *b = getenv("LSPO_BUILDDIR");
	snprintf(out, sizeof(out), "%s/tests/out/ckpt_dir", b ? b : ".");
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", out, out);
	if (system(cmd) != 0)
		return TEST_ERROR;
	lspo_log_set_level(LSPO_LOG_ERROR);

	CHECK(lspo_crc32c(0, "123456789", 9) == 0xe3069283u, "CRC-32C check value: %08x",
	      lspo_crc32c(0, "123456789", 9));
	CHECK(lspo_crc32c(lspo_crc32c(0, "1234", 4), "56789", 5) == 0xe3069283u, "CRC-32C in two parts");

	nparams = lspo_model_nparams(&cfg);
	params = falloc(nparams);
	CHECK(lspo_model_init_params(&cfg, 1, params) == LSPO_OK, "init params");

	struct lspo_ckpt_dir *d = NULL, *d2 = NULL;
	CHECK(lspo_ckptdir_open(out, 2, &d) == LSPO_OK && d, "open");
	CHECK(latest() == -1, "no checkpoint before the first save");
	CHECK(lspo_ckptdir_open(out, 2, &d2) == LSPO_EBUSY && !d2, "a second writer is refused");

	CHECK(save(d, 1, 0, NULL) == LSPO_OK, "save step 1");
	CHECK(latest() == 1, "latest is step 1");
	char *path = NULL, *run = NULL;
	long step = -1;
	CHECK(lspo_ckpt_resolve(out, &path, &step) == LSPO_OK && path && step == 1, "resolve");
	CHECK(path && lspo_ckpt_verify(path, &step, &run) == LSPO_OK && step == 1, "verify step 1");
	CHECK(run && !strcmp(run, "{\"trajectory\":{\"batch\":4}}"), "the run object comes back: %s", run ? run : "NULL");
	free(run);
	free(path);
	CHECK(exists("%s/%s", "model.safetensors") && exists("%s/%s", "config.json"), "OUT reads as a checkpoint");
	struct lspo_model_config back;
	CHECK(lspo_ckpt_read_config(out, &back) == LSPO_OK && back.n_embd == cfg.n_embd, "config through the links");

	/* failed saves: non-finite weights, a missing file, bad names */
	CHECK(save(d, 2, 1, NULL) == LSPO_EFORMAT, "non-finite weights are refused");
	CHECK(save(d, 2, 0, "missing.bin") == LSPO_EIO, "a missing file is refused");
	CHECK(save(d, 2, 0, "../escape") == LSPO_EINVAL, "a path is refused as a file name");
	CHECK(save(d, 2, 0, "manifest.json") == LSPO_EINVAL, "manifest.json is not a caller's file");
	CHECK(latest() == 1 && count(".tmp-") == 0 && !exists("%s/%s", "step-00000002"),
	      "failed saves leave step 1 published and nothing else");

	/* --keep 2 */
	for (long s = 2; s <= 4; s++)
		CHECK(save(d, s, 0, NULL) == LSPO_OK, "save step %ld", s);
	CHECK(latest() == 4 && count("step-") == 2 && exists("%s/%s", "step-00000003"), "keep 2: steps 3 and 4 stay");
	CHECK(save(d, 4, 0, NULL) == LSPO_OK && latest() == 4, "saving the published step again keeps it");

	/* damage: a changed byte, a cut file, a file of another checkpoint */
	char p4[1100], p3[1100];
	snprintf(p4, sizeof(p4), "%s/step-00000004", out);
	snprintf(p3, sizeof(p3), "%s/step-00000003", out);
	snprintf(cmd, sizeof(cmd), "cp '%s/notes.txt' '%s/notes.txt'", p3, p4);
	CHECK(system(cmd) == 0, "copy");
	CHECK(lspo_ckpt_verify(p4, NULL, NULL) == LSPO_EFORMAT, "another checkpoint's file is detected");
	snprintf(cmd, sizeof(cmd), "rm '%s/notes.txt'", p4);
	CHECK(system(cmd) == 0 && lspo_ckpt_verify(p4, NULL, NULL) == LSPO_EIO, "a missing file is detected");
	snprintf(cmd, sizeof(cmd), "rm '%s/manifest.json'", p3);
	CHECK(system(cmd) == 0 && lspo_ckpt_verify(p3, NULL, NULL) == LSPO_EIO, "no manifest: LSPO_EIO");

	{   /* files = NULL: every file written */
		const char *tmp;
		CHECK(lspo_ckptdir_begin(d, 5, &tmp) == LSPO_OK && lspo_ckpt_save(tmp, &cfg, params) == LSPO_OK,
		      "write step 5");
		snprintf(cmd, sizeof(cmd), "echo extra > '%s/extra.txt'", tmp);
		CHECK(system(cmd) == 0 && lspo_ckptdir_commit(d, NULL, 0, NULL) == LSPO_OK && latest() == 5,
		      "commit of every file");
		char mf[1200], text[4096] = "";
		snprintf(mf, sizeof(mf), "%s/step-00000005/manifest.json", out);
		FILE *f = fopen(mf, "r");
		size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
		text[n] = '\0';
		if (f)
			fclose(f);
		CHECK(strstr(text, "\"extra.txt\"") && strstr(text, "\"model.safetensors\"")
		      && strstr(text, "\"config.json\""), "the manifest lists every file: %s", text);
		snprintf(cmd, sizeof(cmd), "%s/step-00000005", out);
		CHECK(lspo_ckpt_verify(cmd, NULL, NULL) == LSPO_OK, "verify step 5");
		CHECK(save(d, 4, 0, NULL) == LSPO_OK && latest() == 4 && !exists("%s/%s", "step-00000005"),
		      "a save of an earlier step drops the abandoned later ones");
	}

	/* what a killed save leaves goes at the next open */
	lspo_ckptdir_close(d);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/.tmp-step-00000009.1' '%s/step-00000009' && touch '%s/x.tmp.abc'",
	         out, out, out);
	CHECK(system(cmd) == 0, "plant leftovers");
	CHECK(lspo_ckptdir_open(out, 2, &d) == LSPO_OK, "reopen");
	CHECK(count(".tmp-") == 0 && !exists("%s/%s", "step-00000009") && !exists("%s/%s", "x.tmp.abc"),
	      "leftovers of killed saves removed");
	CHECK(latest() == 4, "the published checkpoint stays");
	lspo_ckptdir_close(d);

	/* a directory holding a checkpoint that saves did not write */
	char foreign[1100];
	snprintf(foreign, sizeof(foreign), "%s/foreign", out);
	CHECK(lspo_ckpt_save(foreign, &cfg, params) == LSPO_OK, "plain save");
	CHECK(lspo_ckptdir_open(foreign, 2, &d) == LSPO_EINVAL && !d, "a foreign checkpoint directory is refused");
	CHECK(lspo_ckpt_resolve(foreign, &path, &step) == LSPO_OK && path && step == -1, "resolve a plain checkpoint");
	free(path);
	/* links to blobs, as a Hugging Face cache snapshot has them */
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/hf' && ln -s ../foreign/config.json '%s/hf/config.json'", out, out);
	CHECK(system(cmd) == 0, "make a linked checkpoint");
	snprintf(foreign, sizeof(foreign), "%s/hf", out);
	CHECK(lspo_ckptdir_open(foreign, 2, &d) == LSPO_EINVAL && !d, "links that are not ours are refused too");
	CHECK(lspo_ckpt_resolve(foreign, &path, &step) == LSPO_OK && path, "resolve");
	free(path);
	free(params);
	return test_finish("test_ckpt_dir");
}
