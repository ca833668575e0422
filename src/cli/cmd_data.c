/*
 * cmd_data.c - `lspo init` (a randomly initialised GPT-2, Llama or Qwen2 checkpoint),
 * `lspo tokenize` (text -> llm.c token shard) and `lspo check` (validate a
 * checkpoint and token shards before a job uses them).  No StarPU needed.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* 1 if `dir` exists and holds any entry. */
static int dir_nonempty(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *e;
	int n = 0;
	while (!n && (e = readdir(d)))
		n = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

int cmd_init(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config-json", required_argument, 0, 'j' }, { "vocab", required_argument, 0, 'V' },
		{ "n-positions", required_argument, 0, 'P' }, { "n-embd", required_argument, 0, 'C' },
		{ "n-layer", required_argument, 0, 'L' }, { "n-head", required_argument, 0, 'H' },
		{ "seed", required_argument, 0, 's' }, { "out", required_argument, 0, 'o' },
		{ "family", required_argument, 0, 'F' }, { "n-kv-head", required_argument, 0, 'K' },
		{ "intermediate", required_argument, 0, 'I' }, { "head-dim", required_argument, 0, 'D' },
		{ "tie-embeddings", no_argument, 0, 't' },
		{ "force", no_argument, 0, 'f' }, { "help", no_argument, 0, 'h' }, { 0 } };
	const char *json = NULL, *out = NULL, *family = "gpt2";
	long kv = 0, inner = 0, head_dim = 0;
	int tie = 0;
	long size[5] = { 0 };   /* V, P, C, L, H */
	const char *size_opt[5] = { "--vocab", "--n-positions", "--n-embd", "--n-layer", "--n-head" };
	long seed = 0;
	int opt, force = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int bad = 0;
		switch (opt) {
		case 'h':
			printf("usage: lspo init (--config-json FILE | [--family F] --vocab V --n-positions P\n"
			       "                  --n-embd C --n-layer L --n-head H [Llama options])\n"
			       "                 [--seed S] --out DIR\n"
			       "Writes a randomly initialised checkpoint (HF layout): DIR/config.json and\n"
			       "DIR/model.safetensors (float32).  GPT-2: weights N(0, 0.02), residual\n"
			       "projections N(0, 0.02/sqrt(2L)), biases 0, layernorm weights 1.  Llama,\n"
			       "Qwen2: weights N(0, 0.02), biases 0, RMSNorm weights 1.\n"
			       "  --config-json FILE  read the family and sizes from an HF config.json\n"
			       "  --family F          gpt2 (default), llama or qwen2\n"
			       "  --vocab V           vocabulary size\n"
			       "  --n-positions P     longest sequence (context length)\n"
			       "  --n-embd C          embedding width, divisible by H\n"
			       "  --n-layer L         transformer blocks\n"
			       "  --n-head H          attention heads\n"
			       "  --n-kv-head K       llama, qwen2: key/value heads, dividing H (default H)\n"
			       "  --intermediate I    llama, qwen2: MLP width (required)\n"
			       "  --head-dim D        llama, qwen2: head size (default C / H)\n"
			       "  --tie-embeddings    llama, qwen2: the LM head is the token embedding\n"
			       "  --seed S            random seed, 0 .. 2^63-1 (default 0)\n"
			       "  --out DIR           checkpoint directory, created if needed; it must be\n"
			       "                      empty unless --force (which replaces the checkpoint\n"
			       "                      files and removes a training state found there)\n");
			return CLI_OK;
		case 'j': json = optarg; break;
		case 'V': bad = cli_parse_int("--vocab", optarg, 1, 2147483647L, &size[0]); break;
		case 'P': bad = cli_parse_int("--n-positions", optarg, 1, 2147483647L, &size[1]); break;
		case 'C': bad = cli_parse_int("--n-embd", optarg, 1, 2147483647L, &size[2]); break;
		case 'L': bad = cli_parse_int("--n-layer", optarg, 1, 2147483647L, &size[3]); break;
		case 'H': bad = cli_parse_int("--n-head", optarg, 1, 2147483647L, &size[4]); break;
		case 's': bad = cli_parse_int("--seed", optarg, 0, 9223372036854775807L, &seed); break;
		case 'o': out = optarg; break;
		case 'f': force = 1; break;
		case 'F': family = optarg; break;
		case 'K': bad = cli_parse_int("--n-kv-head", optarg, 1, 2147483647L, &kv); break;
		case 'I': bad = cli_parse_int("--intermediate", optarg, 1, 2147483647L, &inner); break;
		case 'D': bad = cli_parse_int("--head-dim", optarg, 2, 2147483647L, &head_dim); break;
		case 't': tie = 1; break;
		default: return cli_usage_error("init", "unknown or incomplete option");
		}
		if (bad)
			return CLI_USAGE;
	}
	if (optind < argc)
		return cli_usage_error("init", "unexpected argument '%s'", argv[optind]);
	if (!out)
		return cli_usage_error("init", "--out DIR is required");
	int nsizes = 0;
	for (int i = 0; i < 5; i++)
		nsizes += size[i] != 0;
	struct lspo_model_config cfg;
	if (json) {
		if (nsizes)
			return cli_usage_error("init", "--config-json and the size options are exclusive");
		struct stat js;   /* a FIFO would block the reader: regular files only */
		if ((stat(json, &js) == 0 && job_check_input("--config-json", json)) || lspo_ckpt_read_config(json, &cfg)) {
			fprintf(stderr, "lspo init: cannot use the config %s\n", json);
			return CLI_FAIL;
		}
	} else {
		for (int i = 0; i < 5; i++)
			if (!size[i])
				return cli_usage_error("init", "%s is required without --config-json", size_opt[i]);
		enum lspo_family fam;
		if (lspo_family_parse(family, &fam))
			return cli_usage_error("init", "--family: expected gpt2, llama or qwen2, got '%s'", family);
		if (fam == LSPO_FAMILY_GPT2 && (kv || inner || head_dim || tie))
			return cli_usage_error("init", "--n-kv-head, --intermediate, --head-dim and --tie-embeddings "
			                       "are options of llama and qwen2");
		if (fam != LSPO_FAMILY_GPT2 && !inner)
			return cli_usage_error("init", "--intermediate is required for %s", family);
		cfg = (struct lspo_model_config){ .vocab_size = (int)size[0], .n_positions = (int)size[1],
		                                  .n_embd = (int)size[2], .n_layer = (int)size[3],
		                                  .n_head = (int)size[4], .family = fam, .n_kv_head = (int)kv,
		                                  .n_inner = (int)inner, .head_dim = (int)head_dim,
		                                  .tie_word_embeddings = tie || fam == LSPO_FAMILY_GPT2 };
		if (fam == LSPO_FAMILY_GPT2 && size[2] % size[4])
			return cli_usage_error("init", "--n-embd (%ld) must be divisible by --n-head (%ld)",
			                       size[2], size[4]);
		int sz = job_check_model_size("init", &cfg, 1);
		if (sz)
			return sz;
		if (lspo_model_config_check(&cfg))
			return cli_usage_error("init", "--vocab %ld --n-positions %ld --n-embd %ld --n-layer %ld "
			                       "--n-head %ld: the sizes do not make a %s model (see the message "
			                       "above)", size[0], size[1], size[2], size[3], size[4], family);
	}
	int rc = job_check_model_size("init", &cfg, 1);
	if (rc)
		return rc;
	struct stat st;
	if (stat(out, &st) == 0 && !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "lspo init: --out %s: exists and is not a directory\n", out);
		return CLI_FAIL;
	}
	if (dir_nonempty(out)) {
		if (!force) {
			fprintf(stderr, "lspo init: --out %s: the directory is not empty (a trained checkpoint?); "
			        "refusing to replace it without --force\n", out);
			return CLI_FAIL;
		}
		/* the old training state belongs to the old weights */
		static const char *const stale[] = { "train_state.safetensors", "manifest.json", "latest" };
		for (size_t i = 0; i < sizeof(stale) / sizeof(stale[0]); i++) {
			char p[4096];
			snprintf(p, sizeof(p), "%s/%s", out, stale[i]);
			if (unlink(p) != 0 && errno != ENOENT) {
				fprintf(stderr, "lspo init: --force: cannot remove %s: %s\n", p, strerror(errno));
				return CLI_FAIL;
			}
		}
	}
	if (job_check_output_dir("--out", out, NULL, 0))
		return CLI_FAIL;
	size_t n = lspo_model_nparams(&cfg);
	float *params = n ? malloc(n * sizeof(float)) : NULL;
	if (!params) {
		fprintf(stderr, "lspo init: cannot allocate %zu parameters (%zu bytes)\n", n, n * sizeof(float));
		return CLI_FAIL;
	}
	rc = lspo_model_init_params(&cfg, (uint64_t)seed, params);
	if (!rc)
		rc = lspo_ckpt_save(out, &cfg, params);
	free(params);
	if (rc) {
		fprintf(stderr, "lspo init: cannot write the checkpoint %s: %s\n", out, lspo_strerror(rc));
		return CLI_FAIL;
	}
	printf("init: %s: %s, %zu parameters (vocab %d, n_positions %d, n_embd %d, n_layer %d, "
	       "n_head %d", out, lspo_family_name(cfg.family), n, cfg.vocab_size, cfg.n_positions, cfg.n_embd,
	       cfg.n_layer, cfg.n_head);
	if (cfg.family != LSPO_FAMILY_GPT2)
		printf(", n_kv_head %d, head_dim %d, intermediate %d%s", cfg.n_kv_head, cfg.head_dim, cfg.n_inner,
		       cfg.tie_word_embeddings ? ", tied head" : "");
	printf("), seed %ld\n", seed);
	return CLI_OK;
}

/* Inputs regular files; OUT (and OUT.mask) a regular file or new, never an input. */
static int tokenize_io(const char *const *ins, int nin, const char *out)
{
	for (int i = 0; i < nin; i++)
		if (job_check_input("tokenize: IN", ins[i]))
			return CLI_FAIL;
	char mask[4200];
	snprintf(mask, sizeof(mask), "%s.mask", out);
	const char *outs[] = { out, mask };
	for (int k = 0; k < 2; k++) {
		struct stat st;
		if (stat(outs[k], &st) == 0 && !S_ISREG(st.st_mode)) {
			fprintf(stderr, "lspo tokenize: OUT %s: not a regular file: refusing to replace it\n", outs[k]);
			return CLI_FAIL;
		}
		if (job_check_output_file("tokenize: OUT", outs[k], ins, nin))
			return CLI_FAIL;
	}
	return CLI_OK;
}

int cmd_tokenize(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bytes", no_argument, 0, 'b' }, { "tokenizer", required_argument, 0, 't' },
		{ "bos", no_argument, 0, 'B' }, { "eos", no_argument, 0, 'E' },
		{ "jsonl", required_argument, 0, 'j' }, { "prompt-field", required_argument, 0, 'p' },
		{ "response-field", required_argument, 0, 'r' },
		{ "template", required_argument, 0, 'T' }, { "threads", required_argument, 0, 'n' },
		{ "help", no_argument, 0, 'h' }, { 0 } };
	int bytes = 0, bos = 0, eos = 0, opt;
	long threads = sysconf(_SC_NPROCESSORS_ONLN);
	threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
	const char *tok = NULL, *jsonl = NULL, *pf = NULL, *rf = NULL, *tpl = NULL;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			printf("usage: lspo tokenize --bytes IN OUT\n"
			       "       lspo tokenize --tokenizer DIR [--bos] [--eos] [--threads N] IN... OUT\n"
			       "       lspo tokenize --tokenizer DIR [--bos] [--threads N] --jsonl FILE --prompt-field F\n"
			       "                     --response-field F [--template FILE] OUT\n"
			       "Tokenises into the token shard OUT (256-int32 header; uint16 tokens, magic\n"
			       "20240520 version 1, if the vocabulary has at most 65535 ids, else uint32\n"
			       "tokens, magic 20240801 version 7), written atomically.\n"
			       "  --bytes           byte-level: each byte is one token id 0..255 (vocab 256)\n"
			       "  --tokenizer DIR   a Hugging Face tokenizer: DIR/tokenizer.json or the file;\n"
			       "                    each IN file is one document; by default EOS goes\n"
			       "                    between documents (if the tokenizer has one)\n"
			       "  --bos, --eos      BOS before / EOS after each document instead\n"
			       "  --jsonl FILE      instruction data: one JSON object per line; each\n"
			       "                    example is prompt then response then EOS, and\n"
			       "                    OUT.mask marks the prompt tokens (and BOS) as not\n"
			       "                    counted in the loss (see README, 'Loss masks')\n"
			       "  --prompt-field F, --response-field F   the string fields of a record\n"
			       "  --template FILE   text with {prompt} then {response}: what precedes\n"
			       "                    {response} is the prompt part, the rest the response\n"
			       "                    part (default: \"{prompt}{response}\"); each part is\n"
			       "                    encoded separately\n"
			       "  --threads N       encode documents (files, examples) on N threads\n"
			       "                    (1-64, default: the online CPUs, here %ld); the\n"
			       "                    shard does not depend on N\n"
			       "A progress line is printed on stderr for inputs over 16 MB (over\n"
			       "$LSPO_PROGRESS_BYTES bytes if set).\n", threads);
			return CLI_OK;
		case 'b': bytes = 1; break;
		case 't': tok = optarg; break;
		case 'B': bos = 1; break;
		case 'E': eos = 1; break;
		case 'j': jsonl = optarg; break;
		case 'p': pf = optarg; break;
		case 'r': rf = optarg; break;
		case 'T': tpl = optarg; break;
		case 'n': if (cli_parse_int("--threads", optarg, 1, 64, &threads)) return CLI_USAGE; break;
		default: return cli_usage_error("tokenize", "unknown or incomplete option");
		}
	}
	if (bytes == !!tok)
		return cli_usage_error("tokenize", "choose a tokeniser: --bytes or --tokenizer DIR");
	if (bytes && (bos || eos || jsonl || pf || rf || tpl))
		return cli_usage_error("tokenize", "--bytes takes no other option");
	if (!jsonl && (pf || rf || tpl))
		return cli_usage_error("tokenize", "--prompt-field, --response-field and --template "
		                       "need --jsonl FILE");
	if (jsonl) {
		if (!pf || !rf)
			return cli_usage_error("tokenize", "--jsonl needs --prompt-field F and "
			                       "--response-field F");
		if (eos)
			return cli_usage_error("tokenize", "--eos: with --jsonl, EOS always follows the "
			                       "response");
		if (argc - optind != 1)
			return cli_usage_error("tokenize", "with --jsonl, expected one argument OUT, got %d",
			                       argc - optind);
		const char *ins[] = { jsonl };
		if (tokenize_io(ins, 1, argv[optind]))
			return CLI_FAIL;
		return cli_tokenize_jsonl(tok, jsonl, pf, rf, tpl, argv[optind], bos, (int)threads);
	}
	if (tok) {
		if (argc - optind < 2)
			return cli_usage_error("tokenize", "expected IN... OUT, got %d argument(s)",
			                       argc - optind);
		if (tokenize_io((const char *const *)argv + optind, argc - optind - 1, argv[argc - 1]))
			return CLI_FAIL;
		return cli_tokenize_text(tok, argv + optind, argc - optind - 1, argv[argc - 1], bos, eos,
		                         (int)threads);
	}
	if (argc - optind != 2)
		return cli_usage_error("tokenize", "expected two arguments IN OUT, got %d", argc - optind);
	if (tokenize_io((const char *const *)argv + optind, 1, argv[optind + 1]))
		return CLI_FAIL;
	size_t n;
	int rc = lspo_tokenize_bytes(argv[optind], argv[optind + 1], &n);
	if (rc) {
		fprintf(stderr, "lspo tokenize: cannot tokenise %s into %s: %s\n", argv[optind],
		        argv[optind + 1], lspo_strerror(rc));
		return CLI_FAIL;
	}
	printf("tokenize: %s: %zu tokens -> %s\n", argv[optind], n, argv[optind + 1]);
	return CLI_OK;
}

/* check --ckpt: config, every tensor, no non-finite value. */
static int check_ckpt(const char *ckpt, long *vocab)
{
	struct lspo_model_config cfg;
	if (lspo_ckpt_read_config(ckpt, &cfg)) {
		fprintf(stderr, "lspo check: invalid checkpoint config in %s\n", ckpt);
		return CLI_FAIL;
	}
	if (job_check_model_size("check", &cfg, 1))
		return CLI_FAIL;
	size_t n = lspo_model_nparams(&cfg);
	float *params = malloc(n * sizeof(float));
	int rc = params ? lspo_ckpt_load_params(ckpt, &cfg, params) : LSPO_ENOMEM;
	free(params);
	if (rc) {
		fprintf(stderr, "lspo check: invalid checkpoint %s: %s\n", ckpt, lspo_strerror(rc));
		return CLI_FAIL;
	}
	if (job_check_finite_dir(ckpt)) {
		fprintf(stderr, "lspo check: invalid checkpoint %s: non-finite values\n", ckpt);
		return CLI_FAIL;
	}
	printf("check: %s: %s checkpoint, %zu parameters (vocab %d, n_positions %d, "
	       "n_embd %d, n_layer %d, n_head %d)\n", ckpt, lspo_family_name(cfg.family), n, cfg.vocab_size,
	       cfg.n_positions, cfg.n_embd, cfg.n_layer, cfg.n_head);
	if (!*vocab)
		*vocab = cfg.vocab_size;
	return CLI_OK;
}

int cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ckpt", required_argument, 0, 'c' }, { "vocab", required_argument, 0, 'V' },
		{ "help", no_argument, 0, 'h' }, { 0 } };
	const char *ckpt = NULL;
	long vocab = 0;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			printf("usage: lspo check [--ckpt DIR] [--vocab V] [SHARD...]\n"
			       "Validates a checkpoint and token shards; prints one line per input and\n"
			       "exits 1 at the first invalid one (the message names the file and field).\n"
			       "  --ckpt DIR   checkpoint directory: config.json and model.safetensors, or a\n"
			       "               --save directory (its latest checkpoint); the files listed\n"
			       "               in a manifest.json must match it; non-finite values are\n"
			       "               refused, naming the tensor\n"
			       "  --vocab V    token ids of the shards must be < V (default: the\n"
			       "               checkpoint's vocab_size, if --ckpt is given)\n"
			       "  SHARD        token shard files (uint16 or uint32 tokens; a SHARD.mask\n"
			       "               beside one is checked too)\n");
			return CLI_OK;
		case 'c': ckpt = optarg; break;
		case 'V': if (cli_parse_int("--vocab", optarg, 1, 2147483647L, &vocab)) return CLI_USAGE; break;
		default: return cli_usage_error("check", "unknown or incomplete option");
		}
	}
	if (!ckpt && optind == argc)
		return cli_usage_error("check", "nothing to check: give --ckpt DIR and/or shard files");
	char *resolved = NULL;
	if (ckpt) {
		long step;
		if (lspo_ckpt_resolve(ckpt, &resolved, &step))
			return CLI_FAIL;
		if (resolved && strcmp(resolved, ckpt)) {
			printf("check: %s: latest checkpoint %s\n", ckpt, resolved);
			ckpt = resolved;
		}
		char mp[4096];
		snprintf(mp, sizeof(mp), "%s/manifest.json", ckpt);
		if (access(mp, F_OK) == 0) {
			char *run = NULL;
			if (lspo_ckpt_verify(ckpt, &step, &run)) {
				fprintf(stderr, "lspo check: invalid checkpoint %s: its manifest does not match its files\n",
				        ckpt);
				free(resolved);
				return CLI_FAIL;
			}
			free(run);
			printf("check: %s: manifest of step %ld: every file present with its size and checksum\n",
			       ckpt, step);
		}
	}
	int ck = ckpt ? check_ckpt(ckpt, &vocab) : CLI_OK;
	free(resolved);
	if (ck)
		return ck;
	for (int i = optind; i < argc; i++) {
		struct lspo_shard *s = NULL;
		if (job_check_input("SHARD", argv[i]))
			return CLI_FAIL;
		int rc = lspo_shard_open(argv[i], &s);
		if (!rc && vocab)
			rc = lspo_shard_check_vocab(s, (int)vocab);
		if (rc) {
			fprintf(stderr, "lspo check: invalid token shard %s: %s\n", argv[i], lspo_strerror(rc));
			lspo_shard_close(s);
			return CLI_FAIL;
		}
		const uint8_t *m = lspo_shard_mask(s);
		size_t counted = 0;
		for (size_t k = 0; m && k < lspo_shard_ntokens(s); k++)
			counted += m[k];
		if (m)
			printf("check: %s: %zu tokens (uint%d), loss mask: %zu counted as targets\n", argv[i],
			       lspo_shard_ntokens(s), 8 * lspo_shard_token_bytes(s), counted);
		else
			printf("check: %s: %zu tokens\n", argv[i], lspo_shard_ntokens(s));
		lspo_shard_close(s);
	}
	return CLI_OK;
}
