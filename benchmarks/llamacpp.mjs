// llama.cpp through node-llama-cpp's prebuilt CPU binaries, driven by benchmarks/llamacpp.py.
// Usage: node llamacpp.mjs MODEL.gguf THREADS. Prints one JSON line when the model is loaded, then
// answers one JSON line per JSON job read from stdin. Every job gives token ids or text (tokenized
// with special tokens, so a chat-formatted prompt reads as the model's own template would make it).
// Sampling is greedy; no prefix is reused (each sequence's history is cleared after each request).
import readline from "node:readline";
import {getLlama} from "node-llama-cpp";

const [modelPath, threadsArg = "2"] = process.argv.slice(2);
const threads = +threadsArg;
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath});

let context = null, sequences = [], shape = "";

// One context whose `count` sequences each hold `perSequence` tokens; remade when the shape changes.
async function sequencesFor(count, perSequence) {
  const key = `${count}x${perSequence}`;
  if (key !== shape) {
    if (context) await context.dispose();
    context = await model.createContext({
      sequences: count, contextSize: count * perSequence, threads, batchSize: 512,
    });
    sequences = Array.from({length: count}, () => context.getSequence());
    shape = key;
  }
  return sequences;
}

const idsOf = (r) => r.ids ?? model.tokenize(r.text, true);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One request: the prompt evaluated, then greedy tokens until an end-of-generation token or max.
async function generate(seq, ids, maxTokens) {
  const start = performance.now();
  let first = null;
  const tokens = [];
  for await (const token of seq.evaluate(ids, {temperature: 0})) {
    if (first === null) first = performance.now();
    if (model.isEogToken(token)) break;
    tokens.push(token);
    if (tokens.length >= maxTokens) break;
  }
  const end = performance.now();
  await seq.clearHistory();
  return {ttft_ms: (first ?? end) - start, total_ms: end - start, prompt_tokens: ids.length, tokens};
}

const jobs = {
  // clients: one list of requests per sequence, sent back to back; delay_ms waits before a request.
  async run({clients, per_sequence}) {
    const seqs = await sequencesFor(clients.length, per_sequence);
    const start = performance.now();
    const answers = await Promise.all(clients.map(async (requests, i) => {
      const out = [];
      for (const r of requests) {
        if (r.delay_ms) await sleep(r.delay_ms);
        out.push(await generate(seqs[i], idsOf(r), r.max_tokens));
      }
      return out;
    }));
    return {wall_ms: performance.now() - start, clients: answers};
  },
  async tokenize({text}) {
    return {ids: model.tokenize(text, true)};
  },
  // Teacher-forced: llama.cpp's greedy next token after every position from `from` - 1 on.
  async top1({ids, from, per_sequence}) {
    const [seq] = await sequencesFor(1, per_sequence);
    const wanted = {generateNext: {token: true, options: {temperature: 0}}};
    const input = ids.map((t, i) => (i >= from - 1 && i < ids.length - 1 ? [t, wanted] : t));
    const out = await seq.controlledEvaluate(input);
    await seq.clearHistory();
    return {next: ids.slice(from - 1, -1).map((_, j) => out[from - 1 + j]?.next?.token ?? null)};
  },
};

console.log(JSON.stringify({ready: true, gguf: modelPath, threads, llama: llama.buildType ?? null}));
for await (const line of readline.createInterface({input: process.stdin})) {
  if (!line.trim()) continue;
  const job = JSON.parse(line);
  try {
    console.log(JSON.stringify(await jobs[job.op](job)));
  } catch (err) {
    console.log(JSON.stringify({error: String(err?.stack ?? err)}));
  }
}
await context?.dispose();
await model.dispose();
