// The demo page's model side, in a Web Worker so the page stays responsive: the library's public API
// only (dist/voxport-web.js: one module, since a worker takes no import map). Messages in: load, clone,
// speak, stop. Out: progress and audio (events), result or error (the answer, carrying its id).
import * as ort from '../node_modules/onnxruntime-web/dist/ort.webgpu.min.mjs';
import { VoxportTTS } from '../dist/voxport-web.js';

ort.env.wasm.wasmPaths = new URL('../node_modules/onnxruntime-web/dist/', import.meta.url).href;
ort.env.logLevel = 'error';

let tts = null;
let voice = null;  // the cloned voice (its transcript comes with each speak request)
let stop = null;  // the AbortController of the request being spoken

const post = (msg, transfer = []) => self.postMessage(msg, transfer);

// session.run on wasm settles as microtasks, so a busy loop never lets a 'stop' message in; one
// macrotask turn per chunk does (MessageChannel: no 4 ms timer clamp)
const yieldToEvents = () => new Promise((resolve) => {
  const ch = new MessageChannel();
  ch.port1.onmessage = () => resolve();
  ch.port2.postMessage(null);
});

const handlers = {
  async load({ url, device, dtype, threads }) {
    await tts?.release();
    tts = null; voice = null;
    tts = await VoxportTTS.load(url, { ort, device, dtype, threads, onProgress: (e) => post({ type: 'progress', ...e }) });
    const { device: d, dtype: p, threads: n, sampleRate, frameRate, voices, languages, takesInstruct, cloneRefusal } = tts;
    return { device: d, dtype: p, threads: n, sampleRate, frameRate, voices, languages, takesInstruct, cloneRefusal,
      maxSeconds: tts.manifest.runtime.max_positions / 2 / frameRate };
  },

  async clone({ samples, name }) {
    voice = null;
    voice = await tts.cloneVoice(samples, { name });
    return { frames: voice.codes.length };
  },

  async speak({ id, text, opts, voiceText }) {
    stop = new AbortController();
    const speech = tts.stream(text, { ...opts, voice: voice ? Object.assign(voice, { text: voiceText }) : opts.voice, signal: stop.signal });
    for await (const pcm of speech) {
      post({ type: 'audio', id, samples: pcm, frames: speech.codes.length }, [pcm.buffer]);
      await yieldToEvents();
    }
    return { stats: speech.stats, frames: speech.codes.length, utterances: speech.utterances, stopped: speech.stopped };
  },

  async forget() { voice = null; },
};

self.onmessage = async ({ data: req }) => {
  if (req.type === 'stop') { stop?.abort(); return; }
  try {
    if (req.type !== 'load' && !tts) throw new Error('no model loaded');
    post({ type: 'result', id: req.id, result: await handlers[req.type](req) });
  } catch (e) {
    post({ type: 'error', id: req.id, message: String(e.message || e), kind: e.name });
  }
};
