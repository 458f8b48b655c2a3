// The npm side of bench_tokenize: js-tiktoken's GPT-2 encoding on the same text, timed the same
// way (one warm-up, best of REPS). Prints "ms tokens hash" for bench_tokenize.c to read.
//   node bench_tokenize.mjs FILE REPS   (run where node_modules holds js-tiktoken)
import { readFileSync } from "node:fs";
import { getEncoding } from "js-tiktoken";

const text = readFileSync(process.argv[2], "utf8");
const reps = Number(process.argv[3] ?? 5);
const enc = getEncoding("gpt2");
let ids = enc.encode(text, [], []);
let best = Infinity;
for (let r = 0; r < reps; r++) {
  const t0 = process.hrtime.bigint();
  ids = enc.encode(text, [], []);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (ms < best) best = ms;
}
let h = 2166136261 >>> 0; // FNV-1a over the ids, as bench_tokenize.c computes it
for (const id of ids) h = Math.imul(h ^ id, 16777619) >>> 0;
console.log(`${best.toFixed(3)} ${ids.length} ${h}`);
