// The demo page on voxport-web's public API: model / precision / device choice, loading progress,
// Speak / Stop / Download, a voice to clone, live readouts. The model runs in a worker (demo/worker.js);
// this side lists an artifact's precisions (VoxportTTS.variants), decodes voice clips and plays audio.
// #stats has data-state (idle|loading|ready|speaking|done|error) for automation.
import { VoxportTTS, decodeAudio, defaultDtype, detectDevice, toWav } from './dist/voxport-web.js';
import { ModelClient } from './demo/client.js';
import { Player } from './demo/player.js';
import { record } from './demo/voice_input.js';

const $ = (id) => document.getElementById(id);
// a fresh worker per load: onnxruntime-web fixes its wasm thread count at first use, and the old
// model's memory goes with the old worker
let client = new ModelClient();
const state = { info: null, device: null, voice: null, chunks: [], recorder: null };

function setState(s) { $('stats').dataset.state = s; }

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = false;
  setState('error');
}
function clearError() { $('error').hidden = true; $('error').textContent = ''; }

function chosenDevice() {
  const v = $('backend').value;
  return v === 'auto' ? state.device.device : v;
}

function modelUrl() {
  const url = $('model-url').value.trim() || $('model').value;
  return new URL(url.endsWith('/') ? url : `${url}/`, location.href).href;
}

async function refreshPrecisions() {
  const sel = $('precision');
  delete sel.dataset.backend;  // set again once the list below is current
  sel.replaceChildren();
  const device = chosenDevice();
  let variants = { dtypes: [], bytes: {} };
  try { variants = await VoxportTTS.variants(modelUrl()); } catch { /* named when loading */ }
  // fp16 kernels need the adapter feature shader-f16 (WebGPU only)
  const usable = variants.dtypes.filter((d) => !d.includes('f16') || (device === 'webgpu' && state.device.f16));
  for (const d of usable) sel.append(new Option(`${d} (${(variants.bytes[d] / 1e6).toFixed(1)} MB)`, d));
  if (usable.length) sel.value = defaultDtype(usable, device, state.device.f16);
  sel.dataset.backend = device;  // automation: the list is current for this device
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

async function load() {
  clearError();
  setState('loading');
  $('speak').disabled = true;
  const device = chosenDevice();
  client.close();
  client = new ModelClient();
  let onProgress = null;
  client.on('progress', (e) => {
    if (e.status === 'files') onProgress = progressView(e.files, e.total);
    else if (e.status === 'progress') onProgress?.(e);
  });
  try {
    state.info = await client.call('load', { url: modelUrl(), device, dtype: $('precision').value || undefined,
      threads: Number($('threads').value) || undefined });
    state.player = new Player(state.info.sampleRate);
    state.voice = null;
    voiceOptions(state.info);
    $('voice-status').textContent = noVoice();
    $('s-backend').textContent = `${state.info.device}${state.info.device === 'wasm' ? `, ${state.info.threads} thread(s)` : ''}, ${state.info.dtype}`;
    $('speak').disabled = false;
    setState('ready');
  } catch (e) {
    showError(e.message);
  }
}

/** The loaded model's voice choices: its speakers (the first one the default), its languages. */
function voiceOptions(info) {
  const fill = (id, values) => {
    $(id).replaceChildren(...values.map((v) => new Option(String(v), String(v))));
    $(`${id}-label`).hidden = values.length === 0;
  };
  fill('speaker', info.voices);
  fill('language', info.languages);
  $('instruct-label').hidden = !info.takesInstruct;
  $('voice-h').textContent = clones(info) ? 'Voice to clone' : 'Voice prompt (optional)';
}

/** A model with no named speakers that clones a voice (a Base model): its voice is the clip's. */
function clones(info) { return info.cloneRefusal == null && info.voices.length === 0; }

function noVoice() {
  return state.info && clones(state.info)
    ? 'No reference clip: this model speaks in the voice of a clip you give, with its transcript.'
    : 'No voice prompt: the model\'s default voice.';
}

function readouts(s) {
  const ms = (x) => (x == null ? '-' : `${Math.round(x)} ms`);
  $('s-first').textContent = ms(s.first_audio_ms);
  $('s-rtf').textContent = s.rtf == null ? '-' : s.rtf.toFixed(2);
  $('s-frames').textContent = String(s.frames ?? '-');
  $('s-perframe').textContent = ms(s.ms_per_frame);
  $('s-total').textContent = ms(s.total_ms);
}

const numberOrNull = (id) => ($(id).value === '' ? null : Number($(id).value));

async function speak() {
  clearError();
  const info = state.info;
  if (state.voice && !$('voice-text').value.trim()) {  // as `voxport speak`: --ref-audio needs --ref-text
    showError(`give the transcript of ${state.voice.name} (what it says): the model reads it beside the clip`);
    return;
  }
  const speaker = $('speaker').value === '' ? null : info.voices.find((v) => String(v) === $('speaker').value);
  const opts = {
    voice: speaker, language: $('language').value || null,
    instruct: (info.takesInstruct && $('instruct').value) || null,
    seed: Number($('seed').value) || 0, maxFrames: numberOrNull('max-frames'),
    temperature: numberOrNull('temperature'), topK: numberOrNull('top-k'), topP: numberOrNull('top-p'),
  };
  if (state.voice) opts.speaker = speaker;
  setState('speaking');
  $('speak').disabled = true; $('stop').disabled = false; $('download').disabled = true;
  const t0 = performance.now();
  const live = { frames: 0, first_audio_ms: null, ms_per_frame: null, rtf: null, total_ms: null };
  state.chunks = [];
  await state.player.start();
  state.player.on('started', () => { live.first_audio_ms ??= performance.now() - t0; readouts(live); });
  client.on('audio', (e) => {
    state.chunks.push(e.samples.slice());
    state.player.push(e.samples);
    live.frames = e.frames; live.ms_per_frame = (performance.now() - t0) / e.frames;
    readouts(live);
  });
  try {
    const r = await client.call('speak', { text: $('text').value, opts, voiceText: $('voice-text').value });
    state.player.end();
    readouts({ ...live, frames: r.frames, rtf: r.stats.rtf, total_ms: performance.now() - t0,
      ms_per_frame: (r.stats.stages.frames_s + r.stats.stages.prefill_s) * 1000 / r.frames });
    $('download').disabled = state.chunks.length === 0;
    setState('done');
  } catch (e) {
    state.player.stop();
    showError(e.message);
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
  a.href = URL.createObjectURL(new Blob([toWav(all, state.info.sampleRate)], { type: 'audio/wav' }));
  a.download = 'voxport.wav';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function useVoice(bytes, name) {
  clearError();
  state.voice = null;
  $('voice-status').dataset.frames = '';
  try {
    if (!state.info) throw new Error('load a model first: the voice clip is encoded with its codec encoder');
    const samples = await decodeAudio(bytes, state.info.sampleRate, name);
    $('voice-status').textContent = `Encoding ${name} ...`;
    const { frames } = await client.call('clone', { samples, name }, [samples.buffer]);
    state.voice = { name };
    $('voice-status').dataset.frames = String(frames);
    $('voice-status').textContent = `Voice prompt: ${name}, ${frames} frames. Give its transcript above.`;
  } catch (e) {
    $('voice-status').textContent = noVoice();
    showError(e.message);
  }
}

async function init() {
  state.device = await detectDevice();
  $('backend-reason').textContent = state.device.reason;
  let models = [];
  try { models = (await (await fetch('/api/models')).json()).models; } catch { /* a static host: type a URL */ }
  for (const m of models) $('model').append(new Option(m.name, m.url));
  await refreshPrecisions();
  $('model').onchange = refreshPrecisions;
  $('model-url').onchange = refreshPrecisions;
  $('backend').onchange = refreshPrecisions;
  $('load').onclick = load;
  $('speak').onclick = speak;
  $('stop').onclick = () => { client.stop(); state.player?.stop(); };
  $('download').onclick = download;
  $('voice-file').onchange = async (e) => {
    const f = e.target.files[0];
    if (f) await useVoice(await f.arrayBuffer(), f.name);
  };
  $('voice-clear').onclick = () => {
    state.voice = null; $('voice-file').value = ''; client.call('forget').catch(() => {});
    $('voice-status').textContent = noVoice();
  };
  $('record').onclick = async () => {
    if (state.recorder) {
      const r = state.recorder; state.recorder = null;
      $('record').textContent = 'Record from microphone';
      await useVoice(await r.stop(), 'recording');
    } else {
      try { state.recorder = await record(); $('record').textContent = 'Stop recording'; } catch (e) { showError(`microphone: ${e.message}`); }
    }
  };
  document.body.dataset.ready = 'true';
}

init();
