/*
 * fuzz_inputs.c - libFuzzer target for everything lspo reads from users'
 * files: the first byte picks the reader, the rest is the file's content.
 *   0: model.safetensors of a fixed tiny config (lspo_ckpt_load_params)
 *   1: config.json (lspo_ckpt_read_config)
 *   2: an llm.c token shard (lspo_shard_open, then a vocabulary check)
 *   3: a loss mask beside a valid 16-token shard (lspo_shard_open)
 *   4: a tokenizer.json (lspo_tokenizer_load, then encode and decode of a
 *      fixed text with special-token lookalikes)
 *   5: a checkpoint manifest.json (lspo_ckpt_verify, beside the files the
 *      other cases wrote)
 *   6: a training state or any safetensors file (lspo_st_check_finite)
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
	switch (data[0] % 7) {
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
	case 3: {
		uint16_t tok[16] = { 1, 2, 3 };
		snprintf(path, sizeof(path), "%s/masked.bin", dir);
		if (lspo_shard_write(path, tok, 16))
			abort();
		write_file("masked.bin.mask", data + 1, size - 1);
		struct lspo_shard *s = NULL;
		if (lspo_shard_open(path, &s) == LSPO_OK) {
			struct lspo_loader *l;
			int32_t x[8], y[8];
			uint8_t m[8];
			if (lspo_loader_create(s, 2, 4, 1, 0, 16, &l) == LSPO_OK)
				lspo_loader_next_masked(l, x, y, m);
			lspo_loader_free(l);
		}
		lspo_shard_close(s);
		break;
	}
	case 4: {
		write_file("tokenizer.json", data + 1, size - 1);
		struct lspo_tokenizer *t = NULL;
		if (lspo_tokenizer_load(dir, &t) == LSPO_OK) {
			static const char text[] = "Hello <s>world</s> \xe2\x96\x81x 12 caf\xc3\xa9\r\n  \xf0\x9f\x98\x80!";
			uint32_t *ids = NULL;
			size_t n = 0, cap = 0, len;
			char *out = NULL;
			if (lspo_tokenizer_encode(t, text, sizeof(text) - 1, &ids, &n, &cap) == LSPO_OK &&
			    lspo_tokenizer_decode(t, ids, n, 0, &out, &len) == LSPO_OK)
				free(out);
			free(ids);
		}
		lspo_tokenizer_free(t);
		break;
	}
	case 5: {
		write_file("manifest.json", data + 1, size - 1);
		long step;
		char *run = NULL;
		lspo_ckpt_verify(dir, &step, &run);
		free(run);
		break;
	}
	case 6: {
		write_file("train_state.safetensors", data + 1, size - 1);
		snprintf(path, sizeof(path), "%s/train_state.safetensors", dir);
		lspo_st_check_finite(path);
		break;
	}
	}
	return 0;
}
