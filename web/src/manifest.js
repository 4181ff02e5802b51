// The artifact contract as the page reads it. This is the one module that knows the manifest's
// layout (format 2: graphs[name].variants[dtype].files, runtime facts under `runtime`).

export const FORMAT_VERSION = 2;
export const DEFAULT_DTYPE = 'fp32';
// The prompt formats this page builds (web/src/tokenize.js, web/src/dual_track.js); the manifest's
// generation.prompt.format names the artifact's.
export const PROMPT_FORMATS = ['chat_template', 'dual_track', 'token_ids'];

/** What the page runs (the fused path of voxport/runtime/stream.py), named by the manifest's generation
 * contract: the prompt graph, the frame graph (one call per frame), the streaming codec. Step graphs
 * and the batch codec stay in the artifact for Python's parity checks; the page does not download
 * them. The codec encoder is loaded on the first voice prompt. */
export function pageGraphs(m) {
  const g = m.runtime.generation;
  return [g.prompt.graph, g.frame.graph, g.codec.stream];
}

export class ArtifactError extends Error {
  constructor(message) { super(message); this.name = 'ArtifactError'; }
}

export function checkManifest(m, url) {
  if (!m || typeof m !== 'object' || !m.graphs || !m.runtime) {
    throw new ArtifactError(`${url}: not a voxport manifest`);
  }
  if (m.format_version !== FORMAT_VERSION) {
    throw new ArtifactError(`${url}: format_version ${m.format_version}, this page reads ${FORMAT_VERSION}`);
  }
  const format = m.runtime.generation?.prompt?.format;
  if (!PROMPT_FORMATS.includes(format)) {
    throw new ArtifactError(`${url}: prompt format ${format} is not built by this page yet (it builds ${PROMPT_FORMATS.join(', ')}); `
      + 'speak it with `voxport speak` or `voxport serve`');
  }
  return m;
}

// The precision the page selects first on each backend, fastest first; the user can pick another.
// wasm, marvis-250m, 2 threads (`voxport bench`): fp32 362 ms/frame, q8 526, q4 3,204 (wasm runs
// 4-bit MatMuls without int8 compute). WebGPU: 4-bit MatMuls have kernels there, int8 ones fall back
// to the CPU; fp16 needs the adapter feature shader-f16.
export const PREFERRED_DTYPES = { wasm: ['fp32', 'q8', 'q4'], webgpu: ['q4f16', 'q4', 'fp32'] };

/** The default precision among `available` on `backend`. */
export function defaultDtype(available, backend) {
  return (PREFERRED_DTYPES[backend] ?? []).find((d) => available.includes(d)) ?? available[0];
}

/** Precisions every graph of the model is available in (the page's precision choices). */
export function precisions(m, names = Object.keys(m.graphs)) {
  const sets = names.map((n) => new Set(Object.keys(m.graphs[n].variants)));
  return [...sets[0]].filter((d) => sets.every((s) => s.has(d)));
}

/** graph name + dtype -> file entries [{path, sha256, bytes}]; entry 0 is the .onnx, the rest external data. */
export function graphFiles(m, name, dtype = DEFAULT_DTYPE) {
  const g = m.graphs[name];
  if (!g) throw new ArtifactError(`manifest has no graph '${name}'`);
  const v = g.variants[dtype];
  if (!v) throw new ArtifactError(`graph '${name}' has no ${dtype} variant`);
  return v.files;
}

/** Output names of a graph, in the manifest's order. */
export function outputNames(m, name) {
  return m.graphs[name].outputs.map((o) => o.name);
}

/** Tokenizer, chat template and special tokens: the files every precision shares. */
export function sharedFiles(m) {
  return m.files ?? [];
}
