// tokenizer_ref_bench.js DIR TEXT - encoding speed of the JavaScript
// reference (transformers.js's tokenizers, @lenml/tokenizers) on the same
// ~64 KB documents as bench_tokenizer (cut at line ends), best of 3 passes,
// one thread.  Prints: reference DIR MB tokens load_s encode_s MB_per_s
// cpu_s MB_per_cpu_s (TSV).  Run with NODE_PATH=<fetch-refs DIR>/node_modules.
const fs = require("fs");
const path = require("path");
const { TokenizerLoader } = require("@lenml/tokenizers");
const [dir, textPath] = process.argv.slice(2);
const buf = fs.readFileSync(textPath);
const docs = [];
for (let p = 0; p < buf.length;) {
  let e = Math.min(p + 65536, buf.length);
  while (e < buf.length && buf[e - 1] !== 0x0a) e++;
  docs.push(buf.subarray(p, e).toString("utf8"));
  p = e;
}
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
let t0 = performance.now();
const cfgPath = path.join(dir, "tokenizer_config.json");
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
  tokenizerConfig: fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {},
});
const load = (performance.now() - t0) / 1e3;
let best = Infinity, bestCpu = Infinity, ntok = 0;
for (let pass = 0; pass < 3; pass++) {
  const s = performance.now(), c = cpu();
  ntok = 0;
  for (const d of docs) ntok += tok.encode(d, { add_special_tokens: false }).length;
  best = Math.min(best, (performance.now() - s) / 1e3);
  bestCpu = Math.min(bestCpu, cpu() - c);
}
const mb = buf.length / 1e6;
console.log(["reference", dir, "1", mb.toFixed(2), ntok, load.toFixed(2), best.toFixed(3),
             (mb / best).toFixed(2), bestCpu.toFixed(3), (mb / bestCpu).toFixed(2)].join("\t"));
