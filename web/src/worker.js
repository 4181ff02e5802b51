// The model side of the page, in a Web Worker so the page stays responsive: loads and checks the
// artifact files, creates onnxruntime-web sessions, builds prompts, runs generation and decoding.
// Messages in: load, tokenize, encode, speak, stop. Out: progress, audio, frame (streamed events) and
// result or error (the answer to a request, carrying its id).
import * as ort from '../node_modules/onnxruntime-web/dist/ort.webgpu.min.mjs';
import { checkManifest, graphFiles, outputNames, sharedFiles, ArtifactError, pageGraphs } from './manifest.js';
import { fetchJson, fetchVerified } from './loader.js';
import { promptBuilder } from './tokenize.js';
import { CodecStream, generateFrames, isEos } from './generate.js';

ort.env.wasm.wasmPaths = new URL('../node_modules/onnxruntime-web/dist/', import.meta.url).href;
ort.env.logLevel = 'error';

let model = null;  // {g, prompts, manifest, base, dtype, backend, sessions, onDemand}
let stopRequested = false;

const post = (msg, transfer = []) => self.postMessage(msg, transfer);

// session.run on wasm settles as microtasks, so a busy loop never lets a 'stop' message in; one
// macrotask turn per frame does (MessageChannel: no 4 ms timer clamp)
const yieldToEvents = () => new Promise((resolve) => {
  const ch = new MessageChannel();
  ch.port1.onmessage = () => resolve();
  ch.port2.postMessage(null);
});

async function createSession(m, name, files, backend) {
  const [main, ...external] = files;
  const options = {
    executionProviders: [backend],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,  // errors only: ORT's node-placement warnings reach the console as errors
    externalData: external.map((f) => ({ path: f.path.split('/').pop(), data: f.data })),
  };
  // On WebGPU what goes straight back in stays on the GPU between calls (backbone KV, the next
  // frame's embedding, the codec state); codes and audio come back to the CPU. A zero-size state
  // tensor (a conv with no left context) stays on the CPU: there is no buffer to keep.
  if (backend === 'webgpu') {
    const empty = new Set((m.runtime.codec_stream?.state ?? [])
      .filter((e) => e.shape.includes(0)).map((e) => e.output));
    const onGpu = (o) => !empty.has(o) && (o.startsWith('present.') || o.startsWith('state_out.') || o === 'next_embeds');
    options.preferredOutputLocation = Object.fromEntries(outputNames(m, name)
      .map((o) => [o, onGpu(o) ? 'gpu-buffer' : 'cpu']));
  }
  try {
    return await ort.InferenceSession.create(main.data, options);
  } catch (e) {
    const why = String(e.message || e);
    // wasm32 has a 4 GB heap: a large fp32 model does not fit (marvis-250m fp32: bad_alloc)
    const hint = /bad_alloc|out of memory/i.test(why) ? '; out of memory: try a smaller precision or WebGPU' : '';
    throw new ArtifactError(`${main.path}: onnxruntime-web could not load it (${why.slice(0, 200)})${hint}`);
  }
}

async function load({ url, dtype, backend, threads }) {
  if (model) {  // one model at a time: free the previous one's sessions (and GPU buffers) first
    await Promise.all(Object.values(model.sessions).map((s) => s.release()));
    model = null;
  }
  const base = new URL(url, self.location.href);
  const manifest = checkManifest(await fetchJson(new URL('manifest.json', base)), base.href);
  const rt = manifest.runtime;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? threads : 1;
  const plan = [...sharedFiles(manifest).map((e) => ({ e })),
    ...pageGraphs(manifest).flatMap((name) => graphFiles(manifest, name, dtype).map((e) => ({ e, name })))];
  const total = plan.reduce((a, p) => a + p.e.bytes, 0);
  const loaded = new Map();
  post({ type: 'progress', files: plan.map((p) => ({ path: p.e.path, bytes: p.e.bytes })), total });
  // fetch sequentially: progress stays readable and memory peaks at one file in flight
  for (const p of plan) {
    p.data = await fetchVerified(base, p.e, (n, cached) => {
      loaded.set(p.e.path, n);
      post({ type: 'progress', path: p.e.path, loaded: n, cached,
        totalLoaded: [...loaded.values()].reduce((a, b) => a + b, 0), total });
    });
  }
  const text = (path) => new TextDecoder().decode(plan.find((p) => p.e.path === path).data);
  // the chat template and its special tokens are files of the chat_template format only
  const prompts = promptBuilder({
    tokenizer: JSON.parse(text(rt.tokenizer_file)), template: rt.chat_template_file && text(rt.chat_template_file),
    special: rt.special_tokens_file && JSON.parse(text(rt.special_tokens_file)),
  }, rt);
  const sessions = {};
  for (const name of pageGraphs(manifest)) {  // one after another: WebGPU refuses parallel session creation
    const files = plan.filter((p) => p.name === name).map((p) => ({ path: p.e.path, data: p.data }));
    sessions[name] = await createSession(manifest, name, files, backend);
  }
  // graphs of a voice prompt, loaded on its first use: the codec encoder and, where the model clones
  // a voice, the speaker encoder; their files are looked up now so a missing precision fails the load
  // (as Python's Graphs checks every graph's variant up front)
  const { encoder, speaker_encoder: speakerEncoder } = rt.generation.codec;
  const onDemand = Object.fromEntries([encoder, speakerEncoder].filter((n) => n && manifest.graphs[n])
    .map((n) => [n, graphFiles(manifest, n, dtype)]));
  const g = {
    ort, rt, timings: {},
    // per graph: [calls, total ms, ms of each call], for the stats readout and the benchmark
    run: async (name, feeds) => {
      const t = performance.now();
      const out = await sessions[name].run(feeds);
      const s = (g.timings[name] ??= [0, 0, []]);
      const ms = performance.now() - t;
      s[0] += 1; s[1] += ms; s[2].push(ms);
      return out;
    },
  };
  model = { g, prompts, manifest, base, dtype, backend, sessions, onDemand };
  return { backend, dtype, threads: ort.env.wasm.numThreads, rt, source: manifest.source,
    bytes: total, graphs: Object.keys(manifest.graphs) };
}

/** A voice prompt graph's session, created on first use. */
async function onDemandSession(name) {
  if (!model.onDemand[name]) throw new ArtifactError(`this artifact has no ${name} graph; voice prompts need it`);
  if (!model.sessions[name]) {
    const files = [];
    for (const e of model.onDemand[name]) files.push({ path: e.path, data: await fetchVerified(model.base, e) });
    model.sessions[name] = await createSession(model.manifest, name, files, model.backend);
  }
  return model.sessions[name];
}

/** mono samples at the codec rate -> {codes [frames][K], vector: the speaker encoder's [hidden] where
 * the manifest names one, else null} (Runtime.reference). */
async function encode({ samples }) {
  const rt = model.manifest.runtime, codec = rt.generation.codec;
  let vector = null;
  if (codec.speaker_encoder) {
    const need = codec.speaker_encoder_min_samples ?? 0;
    if (samples.length < need) {
      throw new Error(`reference audio is ${(samples.length / rt.sample_rate).toFixed(2)} s; the speaker `
        + `encoder needs at least ${(need / rt.sample_rate).toFixed(2)} s`);
    }
    const out = await (await onDemandSession(codec.speaker_encoder)).run({
      input_values: new ort.Tensor('float32', samples, [1, samples.length]) });
    vector = Object.values(out)[0].data.slice();  // [1, hidden]
  }
  const out = await (await onDemandSession(codec.encoder)).run({
    input_values: new ort.Tensor('float32', samples, [1, 1, samples.length]) });
  const t = Object.values(out)[0];  // [1, K, frames] int64
  const [, k, n] = t.dims;
  return { codes: Array.from({ length: n }, (_, f) => Array.from({ length: k }, (_, j) => Number(t.data[j * n + f]))), vector };
}

/** Runtime.default_speaker: CSM's speaker 0, a named model's first speaker, else none. */
function defaultSpeaker({ kind, names }) {
  if (!names.length) return null;
  return kind === 'integer' ? Number(names[0]) : names[0];
}

/** The prompt graph's inputs, the text fed per frame and the speaker vectors (Runtime.prepare). */
function build(turns) {
  return { ...model.prompts.build(turns), trailing: model.prompts.trailing(turns), vectors: model.prompts.vectors(turns) };
}

function promptFor({ text, speaker, language = null, instruct = null, context = [] }) {
  if (!text.trim()) throw new Error('text is empty');
  speaker ??= defaultSpeaker(model.g.rt.generation.speakers);
  const prompt = build([...context, { text, speaker, language, instruct }]);
  const limit = model.g.rt.max_positions;
  if (prompt.ids.length + 1 > limit) {
    throw new Error(`prompt is ${prompt.ids.length} tokens; this model's context is ${limit} positions ` +
      '(text + voice prompt frames + generated frames); shorten the text or the voice prompt');
  }
  return prompt;
}

async function speak(req) {
  const { g } = model;
  const rt = g.rt;
  const prompt = promptFor(req);
  // a frame call may take several positions (contract frame.steps)
  const maxFrames = Math.min(req.maxFrames ?? 125,
    Math.floor((rt.max_positions - prompt.ids.length) / (rt.generation.frame.steps ?? 1)));
  // frames per codec call: 1 gives the earliest audio; larger chunks amortise the call overhead
  const chunkFrames = Math.max(1, Math.floor(req.chunkFrames ?? 1));
  stopRequested = false;
  const codec = new CodecStream(g, req.seed ?? 0);
  g.timings = {};
  const frames = [];
  let pending = [];
  const t0 = performance.now();
  let tFirstFrame = null, tFirstAudio = null, decodeMs = 0, samples = 0;
  const emit = async (flush = false) => {
    const t = performance.now();
    // own buffer: it is transferred
    const audio = (flush ? await codec.flush() : await codec.decode(pending)).slice();
    pending = [];
    decodeMs += performance.now() - t;
    if (!audio.length) return;  // a codec that looks ahead returns nothing for its first frames
    samples += audio.length;
    tFirstAudio ??= performance.now() - t0;
    post({ type: 'audio', id: req.id, samples: audio, at: performance.now() - t0 }, [audio.buffer]);
  };
  try {
    for await (const frame of generateFrames(g, prompt, {
      maxFrames, sampling: req.sampling ?? {}, seed: req.seed ?? 0, shouldStop: () => stopRequested })) {
      frames.push(frame);
      tFirstFrame ??= performance.now() - t0;
      post({ type: 'frame', id: req.id, n: frames.length, ms: performance.now() - t0 });
      if (!isEos(frame, rt)) pending.push(frame);  // the eos frame is the last one and not audio
      if (pending.length >= chunkFrames) await emit();
      await yieldToEvents();
    }
    const generateMs = performance.now() - t0;
    if (pending.length) await emit();
    if (codec.delay && !stopRequested) await emit(true);  // the audio a look-ahead codec still holds
    const totalMs = performance.now() - t0;
    const audioS = samples / rt.sample_rate;
    const calls = (name) => g.timings[name]?.[0] ?? 0;
    return {
      codes: frames, promptIds: prompt.ids, stopped: stopRequested,
      stats: { frames: frames.length, prompt_tokens: prompt.ids.length, first_frame_ms: tFirstFrame,
        first_audio_out_ms: tFirstAudio, generate_ms: generateMs, decode_ms: decodeMs, total_ms: totalMs,
        audio_s: audioS, ms_per_frame: generateMs / frames.length, rtf: audioS ? totalMs / 1000 / audioS : null,
        // the same counts as voxport/runtime/stream.py's stats: generation calls per frame, apart from the
        // prompt graph's calls (the prompt; dual_track: its trailing text too) and the codec calls
        // (one per chunk)
        runtime_calls_per_frame: calls(rt.generation.frame.graph) / frames.length, embed_calls: calls(rt.generation.prompt.graph),
        codec_calls: codec.calls, chunk_frames: chunkFrames,
        frame_ms: g.timings.frame?.[2] ?? [],  // each frame call; the first one includes the prompt
        backend: model.backend, dtype: model.dtype, threads: ort.env.wasm.numThreads,
        graph_ms: Object.fromEntries(Object.entries(g.timings).map(([k, [n, ms]]) => [k, { calls: n, ms }])) },
    };
  } finally {
    codec.close();
  }
}

const handlers = {
  load,
  tokenize: async ({ turns }) => turns.map((t) => model.prompts.build(t).ids),
  prompt: async ({ turns }) => turns.map(build),
  encode,
  speak,
};

self.onmessage = async ({ data: req }) => {
  if (req.type === 'stop') { stopRequested = true; return; }
  try {
    if (req.type !== 'load' && !model) throw new Error('no model loaded');
    const result = await handlers[req.type](req);
    post({ type: 'result', id: req.id, result });
  } catch (e) {
    post({ type: 'error', id: req.id, message: String(e.message || e), kind: e.name });
  }
};
