// ref.js DIR CORPUS OUT [gpt3] - the reference ids: transformers.js's
// tokenizers (@lenml/tokenizers) load DIR/tokenizer.json and encode each
// string of the JSON array CORPUS with no special tokens; OUT gets
// {"tokenizer": DIR, "cases": [{"ids": [...], "decoded": "..."}]}, decoded
// with special tokens kept and no clean-up of spaces (as Hugging Face
// tokenizers' decode).  With "gpt3", gpt-3-encoder's own encoder must agree
// (a second, independent GPT-2 reference), or the script fails.
// Run with NODE_PATH=<fetch-refs DIR>/node_modules.
const fs = require("fs");
const path = require("path");
const { TokenizerLoader } = require("@lenml/tokenizers");
const [dir, corpusPath, outPath, check] = process.argv.slice(2);
const cfgPath = path.join(dir, "tokenizer_config.json");
const cfg = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
cfg.clean_up_tokenization_spaces = false;
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
  tokenizerConfig: cfg,
});
const corpus = JSON.parse(fs.readFileSync(corpusPath, "utf8"));
const gpt3 = check === "gpt3" ? require("gpt-3-encoder") : null;
const cases = corpus.map((text, i) => {
  const ids = Array.from(tok.encode(text, { add_special_tokens: false }));
  if (gpt3 && !text.includes("<|endoftext|>")) {
    const other = gpt3.encode(text);
    if (JSON.stringify(other) !== JSON.stringify(ids)) {
      console.error(`case ${i}: transformers.js and gpt-3-encoder disagree`);
      process.exit(1);
    }
  }
  const decoded = tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  return { ids, decoded };
});
fs.writeFileSync(outPath, JSON.stringify({ tokenizer: dir, cases }));
