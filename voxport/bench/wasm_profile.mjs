// One graph in onnxruntime-web's wasm build under Node, with session profiling: the per-kernel half of
// voxport/bench/wasm_profile.py (which writes the feeds, runs native onnxruntime on the same ones and
// compares). Prints the profile's JSON events (onnxruntime-web writes them to stdout when profiling ends)
// and then one line `{"run_ms": [...], "threads": n}`: each call's wall time around session.run.
//
//   node voxport/bench/wasm_profile.mjs FEEDS_DIR THREADS CALLS
// FEEDS_DIR holds feeds.json ({graph, external: [paths], inputs: [{name, type, dims, file}]}) and each
// input's raw little-endian bytes.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const ort = await import(path.join(here, '../../web/node_modules/onnxruntime-web/dist/ort.node.min.mjs'));
const [dir, threads, calls] = process.argv.slice(2);
const spec = JSON.parse(fs.readFileSync(path.join(dir, 'feeds.json'), 'utf8'));
ort.env.wasm.numThreads = Number(threads);
const ARRAYS = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array, bool: Uint8Array };
const feeds = Object.fromEntries(spec.inputs.map((e) => {
  const bytes = fs.readFileSync(path.join(dir, e.file));
  const data = new ARRAYS[e.type](bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return [e.name, new ort.Tensor(e.type, data, e.dims)];
}));
// the page's own session options (web/src/env/browser.js), profiling added
const session = await ort.InferenceSession.create(fs.readFileSync(spec.graph), {
  executionProviders: ['wasm'], graphOptimizationLevel: 'all', logSeverityLevel: 3, enableProfiling: true,
  externalData: spec.external.map((p) => ({ path: path.basename(p), data: fs.readFileSync(p) })),
});
const runMs = [];
for (let i = 0; i < Number(calls); i++) {
  const t = performance.now();
  await session.run(feeds);
  runMs.push(performance.now() - t);
}
session.endProfiling();
console.log(JSON.stringify({ run_ms: runMs, threads: ort.env.wasm.numThreads }));
