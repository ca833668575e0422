/*
 * fuzz_inputs.c - libFuzzer target for everything lspo reads from users'
 * files: the first byte picks the reader, the rest is the file's content.
 *   0: model.safetensors of a fixed tiny config (lspo_ckpt_load_params)
 *   1: config.json (lspo_ckpt_read_config)
 *   2: an llm.c token shard (lspo_shard_open, then a vocabulary check)
 * Any input must give LSPO_OK or an error code, never a crash, a leak or
 * undefined behaviour.  Built and run by scripts/fuzz.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lspo.h"

static char dir[64];
static const struct lspo_model_config tiny = { .vocab_size = 8, .n_positions = 4, .n_embd = 4,
                                              .n_layer = 1, .n_head = 2 };

static void write_file(const char *name, const uint8_t *data, size_t size)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
		perror(path);
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	snprintf(dir, sizeof(dir), "lspo-fuzz-XXXXXX");   /* in the working directory (scripts/fuzz: build/fuzz) */
	if (!mkdtemp(dir))
		abort();
	lspo_log_set_level(LSPO_LOG_ERROR);   /* rejections are expected: no warnings */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char path[128];
	switch (data[0] % 3) {
	case 0: {
		write_file("model.safetensors", data + 1, size - 1);
		float *params = malloc(lspo_model_nparams(&tiny) * sizeof(float));
		if (params)
			lspo_ckpt_load_params(dir, &tiny, params);
		free(params);
		break;
	}
	case 1: {
		write_file("config.json", data + 1, size - 1);
		struct lspo_model_config cfg;
		lspo_ckpt_read_config(dir, &cfg);
		break;
	}
	case 2: {
		write_file("shard.bin", data + 1, size - 1);
		snprintf(path, sizeof(path), "%s/shard.bin", dir);
		struct lspo_shard *s = NULL;
		if (lspo_shard_open(path, &s) == LSPO_OK)
			lspo_shard_check_vocab(s, 300);
		lspo_shard_close(s);
		break;
	}
	}
	return 0;
}
