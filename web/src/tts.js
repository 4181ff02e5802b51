// The library's face: load an artifact, speak text to PCM (whole or streamed), voices, cancel, progress,
// stats. The same source runs in a browser (main thread or worker, onnxruntime-web) and in Node
// (onnxruntime-node); what differs is the environment (env/browser.js, env/node.js).
import { Graphs, checkManifest, precisions } from './runtime/graphs.js';
import { Runtime } from './runtime/runtime.js';
import { Speech } from './runtime/stream.js';
import { CodecStream } from './runtime/codec_stream.js';
import { promptBuilder } from './runtime/prompt.js';
import { completeSentences, strip } from './runtime/chunking.js';
import { readWav } from './runtime/audio.js';
import { ArtifactError, InputError } from './runtime/errors.js';
import { WASM_CODEC_WARMUP, browserFiles, browserSessions, decodeAudio, detectDevice, fetchJson } from './env/browser.js';

export const isNode = typeof process !== 'undefined' && Boolean(process.versions?.node) && typeof window === 'undefined';

// The precision picked first on each device, fastest first (marvis-250m, 2 threads). wasm: fp32 362
// ms/frame, q8 526, q4 3,204 (onnxruntime-web's wasm build dequantizes 4-bit weights on every call and
// has no relaxed-SIMD int8). WebGPU: 4-bit MatMuls have kernels, fp16 needs shader-f16. Native CPU
// (Node): 4-bit MatMulNBits is the fastest batch-1 kernel (176 us against fp32's 694 for 1024x8192).
export const PREFERRED_DTYPES = { wasm: ['fp32', 'q8', 'q4'], webgpu: ['q4f16', 'q4', 'fp32'], cpu: ['q4', 'q8', 'fp32'] };

/** The default precision among `available` on `device` (f16: the WebGPU adapter has shader-f16). */
export function defaultDtype(available, device, f16 = false) {
  const usable = available.filter((d) => !d.includes('f16') || (device === 'webgpu' && f16));
  return (PREFERRED_DTYPES[device] ?? []).find((d) => usable.includes(d)) ?? usable[0] ?? available[0];
}

async function environment(source, { ort, device, threads, wasmPaths, cache, cacheDir }) {
  if (isNode) {
    const { nodeFiles, nodeSessions } = await import('./env/node.js');
    ort ??= await import('onnxruntime-node');
    const files = await nodeFiles(source, { cacheDir });
    return { ort, files, device: device ?? 'cpu', f16: false, ...nodeSessions(ort, files, { threads: threads ?? 0 }) };
  }
  ort ??= await import('onnxruntime-web/webgpu');
  const found = device ? { device, f16: false } : await detectDevice();
  if (device === 'webgpu') found.f16 = (await detectDevice()).f16;
  const base = new URL(String(source).endsWith('/') ? source : `${source}/`, globalThis.location?.href).href;
  const offered = globalThis.crossOriginIsolated ? (navigator.hardwareConcurrency || 1) : 1;
  return { ort, files: browserFiles(base, { cache }), device: found.device, f16: found.f16,
    codecWarmup: found.device === 'wasm' ? WASM_CODEC_WARMUP : 0, ...browserSessions(ort, { threads: threads ?? offered, wasmPaths }) };
}

/** opts.warmup -> streaming-codec calls after the one-frame utterance (null: none at all). */
function warmupCalls(warmup, envDefault) {
  if (warmup === false) return null;
  if (warmup == null || warmup === true) return envDefault ?? 0;
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new InputError(`warmup must be true, false or a number of codec calls >= 0, got ${JSON.stringify(warmup)}`);
  }
  return warmup;
}

/** `calls` streaming-codec calls on zero codes with a state of their own (thrown away after). */
async function warmCodec(graphs, calls, onProgress) {
  const codec = new CodecStream(graphs), zeros = [new Array(graphs.rt.num_codebooks).fill(0)];
  try {
    for (let i = 1; i <= calls; i++) {
      await codec.decode(zeros);
      onProgress({ status: 'warmup', codecCalls: i, of: calls });
    }
  } finally { codec.close(); }
}

async function textFile(files, manifest, path) {
  if (!path) return null;
  const entry = (manifest.files ?? []).find((e) => e.path === path);
  if (!entry) throw new ArtifactError(`manifest lists no file ${path}`);
  return new TextDecoder().decode(await files.get(entry));
}

/** A voice cloned from a clip: its codes (and speaker vector where the model has a speaker encoder)
 * and its transcript, which the model reads beside the clip. */
export class Voice {
  constructor({ name, text, codes, vector }) { Object.assign(this, { name, text, codes, vector }); }
}

export class VoxportTTS {
  /**
   * source: the artifact's URL (browser, Node) or directory (Node).
   * opts: device ('wasm' | 'webgpu' in a browser, 'cpu' in Node; default: WebGPU where a hardware
   * adapter is, else wasm), dtype (default: the fastest this device runs, among the artifact's), threads
   * (default: the device's cores in a cross-origin-isolated page, onnxruntime's choice in Node), ort
   * (the onnxruntime module: default onnxruntime-web/webgpu, or onnxruntime-node in Node), onProgress,
   * wasmPaths, cache (Cache Storage, default true), cacheDir (Node, for http(s) sources), warmup (default
   * true: speak one frame before returning, so the first request does not pay the sessions' first-run costs,
   * then on wasm call the streaming codec WASM_CODEC_WARMUP more times, env/browser.js; a number: that many
   * codec calls after the frame; false: none),
   * capture (default false: on WebGPU, replay the frame under graph capture where the artifact has the
   * graph for it and the adapter takes it; stats.graph_capture says 'on', 'off' or why it was refused;
   * onnxruntime-web 1.30 refuses every frame graph at its first replay, docs/design.md).
   */
  static async load(source, opts = {}) {
    warmupCalls(opts.warmup, 0);  // a bad value is refused before anything is fetched
    const env = await environment(source, opts);
    const manifest = checkManifest(await env.files.manifest(), env.files.where);
    const rt = manifest.runtime, gen = rt.generation;
    // WebGPU graph capture where the artifact has the graph for it (opts.capture false: not asked for)
    const captureGraph = opts.capture && env.capture?.(env.device) && gen.frame.capture
      && manifest.graphs[gen.frame.capture] ? gen.frame.capture : null;
    const names = [gen.prompt.graph, captureGraph ?? gen.frame.graph, rt.codec_stream.graph];
    const available = precisions(manifest, names);
    const dtype = opts.dtype ?? defaultDtype(available, env.device, env.f16);
    if (!available.includes(dtype)) throw new InputError(`precision ${dtype} is not in this artifact (it has ${available.join(', ')})`);
    const onProgress = opts.onProgress ?? (() => {});
    const graphs = new Graphs(env, manifest, { dtype, device: env.device, keepOnDevice: Runtime.keepOnDevice(rt) });
    const [tokenizer, template, special] = await Promise.all([rt.tokenizer_file, rt.chat_template_file, rt.special_tokens_file]
      .map((p) => textFile(env.files, manifest, p)));
    const prompts = promptBuilder({ tokenizer: JSON.parse(tokenizer), template, special: special && JSON.parse(special) }, rt, env.files.where);
    const files = names.flatMap((n) => manifest.graphs[n].variants[dtype].files);
    onProgress({ status: 'files', files: files.map((e) => ({ path: e.path, bytes: e.bytes })), total: files.reduce((a, e) => a + e.bytes, 0) });
    await graphs.load(names, (e) => onProgress({ status: 'progress', ...e }));
    const runtime = new Runtime(graphs, prompts, captureGraph);
    if (captureGraph) await runtime.useCapture();
    const tts = new VoxportTTS(runtime, { device: env.device, dtype, threads: env.threads, dtypes: available });
    const codecCalls = warmupCalls(opts.warmup, env.codecWarmup);
    if (codecCalls != null) {
      // A session's first runs pay one-off costs (kernel set-up, and on wasm V8 compiling onnxruntime's
      // code): in a page (tiny, 1 thread) the first request's first audio took 1,021-1,120 ms against
      // 170-258 ms for the next one. One frame spoken here moves that into loading; the codec calls
      // after it give V8 time to move the codec's functions to its optimized tier.
      onProgress({ status: 'warmup' });
      await tts.generate('Hello.', { maxFrames: 1, temperature: 0, topK: 1 });
      await warmCodec(graphs, codecCalls, onProgress);
      graphs.timings = {};
      tts.stats = null;
    }
    onProgress({ status: 'ready' });
    return tts;
  }

  /** The precisions an artifact has for the graphs this library runs, with each one's download size
   * in bytes (an app can trade size for speed): {dtypes: [...], bytes: {dtype: n}}. */
  static async variants(source) {
    const env = isNode ? { files: await (await import('./env/node.js')).nodeFiles(source) } : null;
    const where = isNode ? env.files.where : new URL(String(source).endsWith('/') ? source : `${source}/`, globalThis.location?.href).href;
    const m = checkManifest(isNode ? await env.files.manifest() : await fetchJson(new URL('manifest.json', where)), where);
    const gen = m.runtime.generation, names = [gen.prompt.graph, gen.frame.graph, m.runtime.codec_stream.graph];
    const dtypes = precisions(m, names);
    const shared = (m.files ?? []).reduce((a, e) => a + e.bytes, 0);
    return { dtypes, bytes: Object.fromEntries(dtypes.map((d) => [d, shared + names.flatMap((n) => m.graphs[n].variants[d].files)
      .reduce((a, e) => a + e.bytes, 0)])) };
  }

  constructor(runtime, info) {
    this.runtime = runtime;
    Object.assign(this, info);
    const rt = runtime.rt, gen = rt.generation;
    this.manifest = runtime.graphs.manifest;
    this.sampleRate = rt.sample_rate;
    this.frameRate = rt.frame_rate;
    /** speakers as the model names them ([] for a model that only clones); the first is the default */
    this.voices = gen.speakers.names.map((n) => (gen.speakers.kind === 'integer' ? Number(n) : n));
    this.languages = gen.prompt.format === 'dual_track' ? ['auto', ...Object.keys(gen.prompt.languages)] : [];
    this.takesInstruct = Boolean(gen.prompt.instruct);
    /** why a voice clip is refused (null: the model clones a voice from one) */
    this.cloneRefusal = runtime.graphs.manifest.graphs[gen.codec.encoder] == null ? 'it has no codec encoder graph'
      : gen.prompt.voice_clone === false ? 'it speaks as its named speakers and clones no voice' : null;
    this.stats = null;
  }

  /**
   * A voice from a clip: audio is the file's bytes (ArrayBuffer / Uint8Array: any format the browser
   * decodes; WAV in Node) or mono Float32Array samples at this model's sample rate. text: what the clip
   * says (needed before speaking; may be set on the Voice later).
   */
  async cloneVoice(audio, { text = '', name = 'reference audio' } = {}) {
    this.runtime.checkVoice(null, null, null, true);
    const samples = audio instanceof Float32Array ? audio : await this._decode(audio, name);
    const ref = await this.runtime.reference(samples, text, null, name);
    return new Voice({ name, text, codes: ref.codes, vector: ref.vector });
  }

  async _decode(bytes, name) {
    if (typeof OfflineAudioContext !== 'undefined') return decodeAudio(bytes, this.sampleRate, name);
    const wav = readWav(bytes, name);  // a worker or Node: no decoder but WAV's
    if (wav.sampleRate !== this.sampleRate) {
      throw new InputError(`${name}: ${wav.sampleRate} Hz; give ${this.sampleRate} Hz WAV here, or decode it where a browser `
        + 'decoder is (decodeAudio on a page)');
    }
    return wav.samples;
  }

  /** The Speech of a request (opts as generate's; text a string, or an async iterable of its pieces). */
  _speech(text, opts = {}) {
    const { voice = null, speaker = null, language = null, instruct = null, maxFrames, seed, chunkFrames, signal } = opts;
    const cloned = voice instanceof Voice || (voice && typeof voice === 'object');
    if (cloned && !String(voice.text ?? '').trim()) {
      throw new InputError(`give the transcript of ${voice.name ?? 'the voice clip'} (what it says): the model reads it beside the clip`);
    }
    const chosen = this.runtime.checkVoice(cloned ? speaker : (voice ?? speaker), language, instruct, cloned);
    const context = cloned ? [{ text: voice.text, speaker: chosen, codes: voice.codes, vector: voice.vector }] : [];
    const sampling = { temperature: opts.temperature ?? null, topK: opts.topK ?? null, topP: opts.topP ?? null,
      repetitionPenalty: opts.repetitionPenalty ?? null };
    const streamed = typeof text !== 'string';
    const speech = new Speech(this.runtime, { text: streamed ? null : text, sentences: streamed ? sentencesOf(text) : null,
      speaker: chosen, context, language, instruct, maxFrames, sampling, seed, chunkFrames, signal });
    return speech;
  }

  /**
   * Speak text. opts: voice (a speaker of `voices`, or a Voice from cloneVoice), speaker (with a Voice,
   * where the model takes both), language, instruct, maxFrames (per utterance), temperature (0: greedy),
   * topK, topP, repetitionPenalty (each null: the model's own), seed, chunkFrames, signal (AbortSignal),
   * onAudio(chunk) for each PCM chunk as it is decoded.
   * -> {audio: Float32Array, sampleRate, codes: frames x K, utterances, stats, stopped}
   */
  async generate(text, opts = {}) {
    const speech = this._speech(text, opts);
    const chunks = [];
    for await (const pcm of this._iterate(speech)) {
      chunks.push(pcm);
      opts.onAudio?.(pcm);
    }
    const audio = new Float32Array(chunks.reduce((a, c) => a + c.length, 0));
    let at = 0;
    for (const c of chunks) { audio.set(c, at); at += c.length; }
    return { audio, sampleRate: this.sampleRate, codes: speech.codes, utterances: speech.utterances, stats: speech.stats,
      stopped: speech.stopped, timings: speech.timings };
  }

  /**
   * Speak text as it is generated: an async iterable of Float32Array PCM chunks (chunkFrames frames
   * each); text may be a string or an async iterable of pieces (speech starts at the first finished
   * sentence). The returned object carries codes, utterances, stats and stopped as it goes.
   */
  stream(text, opts = {}) {
    const speech = this._speech(text, opts);
    const self = this;
    return Object.assign(Object.create(speech), { [Symbol.asyncIterator]: () => self._iterate(speech) });
  }

  async *_iterate(speech) {
    try {
      yield* speech;
    } finally {
      this.stats = { ...speech.stats, device: this.device, dtype: this.dtype, threads: this.threads,
        graph_capture: this.runtime.captureStatus,
        graph_ms: Object.fromEntries(Object.entries(this.runtime.graphs.timings).map(([k, v]) => [k, { calls: v.calls, ms: v.ms }])) };
      speech.stats = this.stats;
      this.runtime.graphs.timings = {};
    }
  }

  /** Free the sessions (and their GPU buffers). */
  async release() {
    this.runtime.captured?.dispose();
    this.runtime.refused?.dispose();
    await this.runtime.graphs.release();
  }
}

/** Text arriving in pieces -> sentences as each is finished, then the rest. */
async function* sentencesOf(pieces) {
  let buffer = '';
  for await (const piece of pieces) {
    buffer += piece;
    const [done, rest] = completeSentences(buffer);
    yield* done;
    buffer = rest;
  }
  if (strip(buffer)) yield strip(buffer);
}
