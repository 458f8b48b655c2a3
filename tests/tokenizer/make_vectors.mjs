// Makes tests/tokenizer/vectors.json with an independent tokenizer: js-tiktoken (npm, pinned in
// package.json), GPT-2's encoding, and V8's own Unicode regular expressions for the Llama 3 /
// cl100k pre-tokenizer pattern. tpar's test (test_tokenizer.c) compares its ids and pieces
// with these exactly.
//   cd tests/tokenizer && npm install && node make_vectors.mjs ../../data/tinyshakespeare.txt > vectors.json
import { readFileSync } from "node:fs";
import { getEncoding } from "js-tiktoken";

const shakespeare = readFileSync(process.argv[2] ?? new URL("../../data/tinyshakespeare.txt", import.meta.url), "utf8");

const texts = [
  ["empty", ""],
  ["ascii", "Hello, world! This is a test."],
  ["contractions", "I'm sure you've seen it: it's theirs, we'll go, they'd say, we're here, don't."],
  ["contractions upper", "IT'S THEY'RE WE'VE I'M YOU'LL HE'D DON'T 'S 'T"],
  ["quotes alone", "' '' ''' 's'''t 'x 'S 'LL"],
  ["spaces", "a  b   c    d     e\t\tf \t g"],
  ["leading and trailing spaces", "   lead and trail   "],
  ["newlines", "line one\nline two\n\nline four\n\n\n\nend\r\nwindows\r\n"],
  ["only whitespace", " \n \t \n\n   "],
  ["digits", "0 1 12 123 1234 12345 123456789012345678901234567890 3.14159 1,000,000 -42"],
  ["accents", "café naïve résumé Übermaß façade coöperate jalapeño Ångström"],
  ["cyrillic", "Привет, мир! Съешь же ещё этих мягких французских булок."],
  ["greek", "Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο"],
  ["cjk", "日本語のテキスト。中文文本测试。한국어 텍스트입니다."],
  ["arabic hebrew", "مرحبا بالعالم שלום עולם"],
  ["emoji", "I ❤️ tokens 🎉🎉 👍🏽 🇫🇷 done"],
  ["emoji zwj", "family 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 👩🏾‍💻 coding"],
  ["unicode spaces", "a\u00a0b\u2003c\u3000d\u2028e\u2029f"],
  ["combining marks", "e\u0301 a\u0308 n\u0303 Z\u0351\u0352\u0353"],
  ["math symbols", "∀x∈ℝ: x²≥0 ∑ᵢ aᵢ → ∞ ≈ ≠ ± ×÷"],
  ["code c", "int main(void) {\n    for (int i = 0; i < 10; i++) printf(\"%d\\n\", i);\n    return 0;\n}\n"],
  ["code python", "def f(x):\n\tif x is None:\n\t\treturn []  # empty\n\treturn [y**2 for y in x if y % 2 == 0]\n"],
  ["code json", "{\"key\": [1, 2.5e-3, null, true], \"nested\": {\"a\": \"b\"}}"],
  ["punctuation runs", "!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) ___ +++ === ~~~ ``` |||"],
  ["urls", "https://example.com/path?query=1&b=two#frag mailto:someone@example.org"],
  ["mixed scripts", "abcЖЗИ日本123xyz🙂end"],
  ["long word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"],
  ["repeated", "the the the the the the the the the the the the the the the the"],
  ["long space run", "x" + " ".repeat(200) + "y" + "\n".repeat(50) + "z"],
  ["tab runs", "\t\t\t\tindented\n\t\t\t\t\n"],
  ["special token text", "before <|endoftext|> after"],
];
// Slices of tinyshakespeare at fixed offsets.
for (const [start, len] of [[0, 2000], [100000, 3000], [500000, 1500], [1000000, 2500], [shakespeare.length - 1200, 1200]])
  texts.push([`shakespeare ${start}+${len}`, shakespeare.slice(start, start + len)]);

const gpt2 = getEncoding("gpt2");
const out = {
  generator: "tests/tokenizer/make_vectors.mjs",
  package: "js-tiktoken@1.0.21 (getEncoding(\"gpt2\"), encode with no special tokens allowed: their text is ordinary)",
  gpt2: texts.map(([name, text]) => ({ name, text, ids: Array.from(gpt2.encode(text, [], [])) })),
};

// Llama 3's pre-tokenizer (cl100k's pattern): tpar compiles it as the tokenizer.json spells it,
// with (?i:...); V8 (Node 20) has no inline modifiers, so the reference uses tiktoken's
// case-expanded spelling, which means the same.
const llama3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const jsPattern = "('s|'S|'t|'T|'re|'rE|'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|'d|'D)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const re = new RegExp(jsPattern, "gu");
out.llama3_split = {
  pattern: llama3,
  js_pattern: jsPattern,
  cases: texts.filter(([, t]) => t.length > 0).map(([name, text]) => ({ name, text, pieces: text.match(re) ?? [] })),
};
for (const c of out.llama3_split.cases)
  if (c.pieces.join("") !== c.text) throw new Error(`the pattern does not cover '${c.name}'`);
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
