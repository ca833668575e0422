// llamacpp-vectors.js MODELS OUT NAME... - converts llama.cpp's tokenizer
// test vectors MODELS/ggml-vocab-NAME.gguf.inp (strings separated by
// "\n__ggml_vocab_test__\n") and .out (one line of ids per string, made by
// Hugging Face tokenizers with add_special_tokens=False) into
// OUT/NAME.corpus.json (an array of strings) and OUT/NAME.expected.json
// ({"cases": [{"ids": [...]}]}), the inputs of tests/tok_ref_check.
const fs = require("fs");
const [models, out, ...names] = process.argv.slice(2);
const sep = "\n__ggml_vocab_test__\n";
for (const name of names) {
  const inp = fs.readFileSync(`${models}/ggml-vocab-${name}.gguf.inp`, "utf8").split(sep);
  if (inp[inp.length - 1] === "") inp.pop();
  const lines = fs.readFileSync(`${models}/ggml-vocab-${name}.gguf.out`, "utf8").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  if (inp.length !== lines.length) {
    console.error(`${name}: ${inp.length} strings but ${lines.length} id lines`);
    process.exit(1);
  }
  const cases = lines.map((l) => ({ ids: l.trim() ? l.trim().split(/ +/).map(Number) : [] }));
  fs.writeFileSync(`${out}/${name}.corpus.json`, JSON.stringify(inp));
  fs.writeFileSync(`${out}/${name}.expected.json`, JSON.stringify({ source: "llama.cpp", cases }));
}
