// The page: model / precision / backend choice, loading progress, Speak / Stop / Download, voice
// prompt, live readouts. Everything model-side happens in the worker (client.js -> worker.js).
//
// Test and automation hook: window.voxport = {ready, backend, load({url, backend, dtype, threads}),
// speak({text, speaker, language, instruct, maxFrames, sampling: {temperature, topK, topP, repetitionPenalty}, seed,
// chunkFrames}) -> {codes, promptIds, stopped, stats}, tokenize(turns) -> prompt ids,
// prompt(turns) -> {ids, codes, trailing, vectors}, useVoice(bytes, name), voiceCodes, voiceVector (the
// speaker encoder's, where the model clones a voice), last, lastError};
// #stats has data-state (idle|loading|ready|speaking|done|error).
import { ModelClient } from './client.js';
import { Player, wavBlob } from './audio.js';
import { pageGraphs, defaultDtype, precisions } from './manifest.js';
import { prepareVoice, record } from './voice.js';

const $ = (id) => document.getElementById(id);
// a fresh worker per load: onnxruntime-web fixes its wasm thread count at first use, and the old
// model's memory goes with the old worker
let client = new ModelClient();
const state = { manifest: null, info: null, backend: null, voice: null, chunks: [], recorder: null };
const hook = { last: null, lastError: null };
window.voxport = hook;

function setState(s) { $('stats').dataset.state = s; }

function showError(message) {
  hook.lastError = message;
  $('error').textContent = message;
  $('error').hidden = false;
  setState('error');
}
function clearError() { $('error').hidden = true; $('error').textContent = ''; hook.lastError = null; }

/** WebGPU when an adapter is there; a software (fallback) adapter is 30-50x slower than wasm, so
 * automatic picks wasm then and says so. */
async function detectBackend() {
  if (!navigator.gpu) return { webgpu: false, f16: false, reason: 'wasm: this browser exposes no WebGPU (navigator.gpu)' };
  let adapter = null;
  try { adapter = await navigator.gpu.requestAdapter(); } catch { /* no adapter */ }
  if (!adapter) return { webgpu: false, f16: false, reason: 'wasm: WebGPU gave no adapter' };
  const info = adapter.info ?? {};
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
  const f16 = adapter.features.has('shader-f16');
  const fallback = Boolean(info.isFallbackAdapter);
  return { webgpu: true, f16, fallback, adapter: name,
    reason: fallback ? `wasm: the WebGPU adapter (${name}) is a software fallback, slower than wasm; pick WebGPU to use it anyway`
      : `WebGPU: adapter ${name}${f16 ? ', shader-f16' : ''}` };
}

function chosenBackend() {
  const v = $('backend').value;
  if (v !== 'auto') return v;
  return state.backend.webgpu && !state.backend.fallback ? 'webgpu' : 'wasm';
}

function modelUrl() {
  const typed = $('model-url').value.trim();
  const url = typed || $('model').value;
  return url.endsWith('/') ? url : `${url}/`;
}

async function refreshPrecisions() {
  const sel = $('precision');
  delete sel.dataset.backend;  // set again once the list below is current
  sel.replaceChildren();
  try {
    const r = await fetch(new URL('manifest.json', new URL(modelUrl(), location.href)), { cache: 'no-store' });
    state.manifest = r.ok ? await r.json() : null;
  } catch { state.manifest = null; }
  const list = state.manifest ? precisions(state.manifest, pageGraphs(state.manifest).filter((g) => state.manifest.graphs?.[g])) : ['fp32'];
  // fp16 kernels need the adapter feature shader-f16 (WebGPU only)
  const backend = chosenBackend();
  const usable = list.filter((d) => !d.includes('f16') || (backend === 'webgpu' && state.backend.f16));
  for (const d of usable) sel.append(new Option(d, d));
  sel.value = defaultDtype(usable, backend);
  sel.dataset.backend = backend;  // tests and automation: the list is current for this backend
}

function progressView(files, total) {
  const box = $('progress');
  box.replaceChildren();
  const row = (label, max) => {
    const div = document.createElement('div');
    div.className = 'file';
    const name = document.createElement('span'); name.textContent = label;
    const bar = document.createElement('progress'); bar.max = Math.max(1, max); bar.value = 0;
    bar.setAttribute('aria-label', `download of ${label}`);
    const pct = document.createElement('span'); pct.textContent = '0%';
    div.append(name, bar, pct);
    box.append(div);
    return (n, note = '') => { bar.value = n; pct.textContent = `${Math.round((100 * n) / bar.max)}%${note}`; };
  };
  const rows = Object.fromEntries(files.map((f) => [f.path, row(f.path, f.bytes)]));
  const totalRow = row(`total (${(total / 1e6).toFixed(1)} MB)`, total);
  return (e) => { rows[e.path]?.(e.loaded, e.cached ? ' cached' : ''); totalRow(e.totalLoaded); };
}

async function load(opts = {}) {
  clearError();
  setState('loading');
  $('speak').disabled = true;
  const backend = opts.backend ?? chosenBackend();
  const dtype = opts.dtype ?? ($('precision').value || 'fp32');
  const threads = Number(opts.threads ?? $('threads').value) || 1;
  client.close();
  client = new ModelClient();
  let onProgress = null;
  client.on('progress', (e) => {
    if (e.files) onProgress = progressView(e.files, e.total);
    else onProgress?.(e);
  });
  try {
    state.info = await client.call('load', { url: new URL(opts.url ?? modelUrl(), location.href).href, dtype, backend, threads });
    state.player = new Player(state.info.rt.sample_rate);
    state.voice = null;
    voiceOptions(state.info.rt.generation);
    $('voice-status').textContent = noVoice();
    $('s-backend').textContent = `${backend}${backend === 'wasm' ? `, ${state.info.threads} thread(s)` : ''}, ${dtype}`;
    $('speak').disabled = false;
    setState('ready');
    return state.info;
  } catch (e) {
    showError(e.message);
    throw e;
  }
}

/** The loaded model's voice choices: its speakers (generation.speakers, the first one the default)
 * and, for the dual_track format, its languages after "auto". */
function voiceOptions(gen) {
  const fill = (id, values) => {
    $(id).replaceChildren(...values.map((v) => new Option(v, v)));
    $(`${id}-label`).hidden = values.length === 0;
  };
  fill('speaker', gen.speakers.names);
  fill('language', gen.prompt.format === 'dual_track' ? ['auto', ...Object.keys(gen.prompt.languages)] : []);
  $('instruct-label').hidden = !gen.prompt.instruct;
  $('voice-h').textContent = clones(gen) ? 'Voice to clone' : 'Voice prompt (optional)';
}

/** A model with no named speakers that clones a voice (a Base model): its voice is the reference clip's. */
function clones(gen) {
  return Boolean(gen.prompt.voice_clone) && gen.speakers.names.length === 0;
}

function noVoice() {
  return state.info && clones(state.info.rt.generation)
    ? 'No reference clip: this model speaks in the voice of a clip you give, with its transcript.'
    : 'No voice prompt: the model\'s default voice.';
}

/** The chosen speaker as the prompt format takes it (CSM's are integers); null: the model has none. */
function chosenSpeaker(gen) {
  const v = $('speaker').value;
  if (!v) return null;
  return gen.speakers.kind === 'integer' ? Number(v) : v;
}

function readouts(s) {
  const ms = (x) => (x == null ? '-' : `${Math.round(x)} ms`);
  $('s-first').textContent = ms(s.first_audio_ms);
  $('s-rtf').textContent = s.rtf == null ? '-' : s.rtf.toFixed(2);
  $('s-frames').textContent = String(s.frames ?? '-');
  $('s-perframe').textContent = ms(s.ms_per_frame);
}

async function speak(opts = {}) {
  clearError();
  const text = opts.text ?? $('text').value;
  const gen = state.info.rt.generation;
  const speaker = opts.speaker ?? chosenSpeaker(gen);
  const req = {
    text, speaker, language: opts.language ?? ($('language').value || null),
    instruct: opts.instruct ?? ((gen.prompt.instruct && $('instruct').value) || null),
    seed: Number(opts.seed ?? $('seed').value) || 0,
    maxFrames: Number(opts.maxFrames ?? $('max-frames').value) || 125,
    chunkFrames: opts.chunkFrames ?? 1,  // frames per codec call (hook only; 1 = earliest audio)
    sampling: opts.sampling ?? { temperature: Number($('temperature').value) || 0, topK: Number($('top-k').value) || 0,
      topP: $('top-p').value === '' ? null : Number($('top-p').value) },
    // the voice prompt speaks as the chosen speaker (Runtime.reference takes the request's)
    context: state.voice ? [{ text: state.voice.text, speaker, codes: state.voice.codes, vector: state.voice.vector }] : [],
  };
  if (state.voice && !state.voice.text.trim()) {  // as `voxport speak`: --ref-audio needs --ref-text
    const e = new Error(`give the transcript of ${state.voice.name} (what it says): the model reads it beside the clip`);
    showError(e.message);
    throw e;
  }
  setState('speaking');
  $('speak').disabled = true; $('stop').disabled = false; $('download').disabled = true;
  const t0 = performance.now();
  const live = { frames: 0, first_audio_ms: null, ms_per_frame: null, rtf: null };
  state.chunks = [];
  await state.player.start();
  const ended = new Promise((resolve) => state.player.on('ended', resolve));
  state.player.on('started', () => { live.first_audio_ms ??= performance.now() - t0; readouts(live); });
  client.on('frame', (e) => { live.frames = e.n; live.ms_per_frame = e.ms / e.n; readouts(live); });
  client.on('audio', (e) => { state.chunks.push(e.samples.slice()); state.player.push(e.samples); });
  try {
    const r = await client.call('speak', req);
    const generationEndMs = performance.now() - t0;
    state.player.end();
    const stats = { ...r.stats, first_audio_ms: live.first_audio_ms, generation_end_ms: generationEndMs };
    hook.last = { codes: r.codes, promptIds: r.promptIds, stopped: r.stopped, stats, played: ended };
    readouts(stats);
    $('download').disabled = state.chunks.length === 0;
    setState('done');
    return hook.last;
  } catch (e) {
    state.player.stop();
    showError(e.message);
    throw e;
  } finally {
    $('speak').disabled = false; $('stop').disabled = true;
  }
}

function download() {
  const n = state.chunks.reduce((a, c) => a + c.length, 0);
  const all = new Float32Array(n);
  let at = 0;
  for (const c of state.chunks) { all.set(c, at); at += c.length; }
  const a = document.createElement('a');
  a.href = URL.createObjectURL(wavBlob(all, state.info.rt.sample_rate));
  a.download = 'voxport.wav';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function useVoice(bytes, name) {
  clearError();
  try {
    if (!state.info) throw new Error('load a model first: the voice prompt is encoded with its codec encoder');
    const rt = state.info.rt;
    const samples = await prepareVoice(bytes, name, rt.sample_rate, rt.max_positions / 2 / rt.frame_rate);
    $('voice-status').textContent = `Encoding ${name} ...`;
    const { codes, vector } = await client.call('encode', { samples }, [samples.buffer]);
    hook.voiceCodes = codes;
    hook.voiceVector = vector;
    state.voice = { codes, vector, name, get text() { return $('voice-text').value; } };
    $('voice-status').textContent = `Voice prompt: ${name}, ${codes.length} frames. Give its transcript above.`;
    return codes;
  } catch (e) {
    state.voice = null;
    hook.voiceCodes = null;
    hook.voiceVector = null;
    $('voice-status').textContent = noVoice();
    showError(e.message);
    throw e;
  }
}

async function init() {
  state.backend = await detectBackend();
  $('backend-reason').textContent = state.backend.reason;
  let models = [];
  try { models = (await (await fetch('/api/models')).json()).models; } catch { /* a static host: type a URL */ }
  for (const m of models) $('model').append(new Option(m.name, m.url));
  await refreshPrecisions();
  $('model').onchange = refreshPrecisions;
  $('model-url').onchange = refreshPrecisions;
  $('backend').onchange = refreshPrecisions;
  $('load').onclick = () => load().catch(() => {});
  $('speak').onclick = () => speak().catch(() => {});
  $('stop').onclick = () => { client.stop(); state.player?.stop(); };
  $('download').onclick = download;
  $('voice-file').onchange = async (e) => {
    const f = e.target.files[0];
    if (f) await useVoice(await f.arrayBuffer(), f.name).catch(() => {});
  };
  $('voice-clear').onclick = () => { state.voice = null; $('voice-file').value = '';
    $('voice-status').textContent = noVoice(); };
  $('record').onclick = async () => {
    if (state.recorder) {
      const r = state.recorder; state.recorder = null;
      $('record').textContent = 'Record from microphone';
      await useVoice(await r.stop(), 'recording').catch(() => {});
    } else {
      try { state.recorder = await record(); $('record').textContent = 'Stop recording'; } catch (e) { showError(`microphone: ${e.message}`); }
    }
  };
  Object.assign(hook, {
    backend: state.backend, load, speak, useVoice,
    tokenize: (turns) => client.call('tokenize', { turns }),
    prompt: (turns) => client.call('prompt', { turns }),
  });
}

hook.ready = init();
