// Streaming speech from the fused `frame` graph (a port of voxport/runtime/stream.py): one runtime call
// per frame, PCM as soon as a chunk of frames exists, text longer than one utterance split at sentences
// with the codec state carried across the joins and each utterance the next one's context where the
// prompt format carries context.
import { planUtterances } from './chunking.js';
import { CodecStream } from './codec_stream.js';
import { dispose } from './kv.js';
import { InputError } from './errors.js';
import { NumpyRng, drawNoise } from './sampling.js';

const now = () => performance.now() / 1000;
// a chunk size as Python's message shows it (an int, or a list / tuple of them)
const chunkRepr = (v) => (Array.isArray(v) ? `[${v.join(', ')}]` : String(v));
const round = (x) => Math.round(x * 1e4) / 1e4;

/**
 * One request. Iterate it (for await) for Float32Array PCM chunks; `codes`, `utterances` and `stats`
 * fill in as it goes. A consumer that stops early (break, return) ends generation; so does `signal`
 * (an AbortSignal), checked before every frame: the iteration then ends quietly and `stopped` is true.
 * `sentences`, when given, replaces `text`: utterances as they come (an async iterable: the text may
 * still be arriving), spoken in order with one codec stream and each as the next one's context.
 */
export class Speech {
  constructor(rt, { text = null, sentences = null, speaker = null, context = [], language = null, instruct = null,
    maxFrames = null, sampling = {}, seed = 0, chunkFrames = null, signal = null } = {}) {
    Object.assign(this, { rt, text, sentences, speaker, context, language, instruct, maxFrames, sampling, seed,
      chunkFrames, signal });
    this.codes = [];  // every generated frame, eos frames included
    this.utterances = [];  // per utterance: text, first frame, frames
    this.stats = {};
    this.timings = { frame_s: [], codec_s: [] };  // every frame call (an utterance's first includes its prompt) and codec call
    this.stopped = false;
  }

  [Symbol.asyncIterator]() {
    // frames per codec call: a number, or a schedule (the i-th chunk of an utterance has schedule[i] frames,
    // the last repeating: a small first chunk for early audio, larger ones for throughput); null: the
    // manifest's `codec_stream.chunk_schedule` (1 frame each where an artifact names none)
    this.chunkFrames ??= [...(this.rt.rt.codec_stream.chunk_schedule ?? [1])];
    this.schedule = Array.isArray(this.chunkFrames) ? [...this.chunkFrames] : [this.chunkFrames];
    if (!this.schedule.length || this.schedule.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new InputError(`chunk size must be >= 1 frame, got ${chunkRepr(this.chunkFrames)}`);
    }
    this.contract = this.rt.contract;
    this.maxFrames = this.contract.maxFrames(this.maxFrames);  // null: the model's (generation.defaults)
    this.contract.samplingFeeds(this.rt.ort, this.sampling);  // checks the settings against every group
    if (this.speaker == null) this.speaker = this.rt.defaultSpeaker;
    return this._run();
  }

  async *_run() {
    const rt = this.rt, t0 = now();
    const timer = { prefill_s: 0, frames_s: 0, codec_s: 0 };
    const calls = { embed: 0, frame: 0 };
    const codec = new CodecStream(rt.graphs, this.seed), rng = new NumpyRng(this.seed);
    let samples = 0, firstAudio = null;
    this.stats = { stages: timer };
    const emit = async (pending) => {
      const t = now();
      const pcm = pending ? await codec.decode(pending) : await codec.flush();
      this.timings.codec_s.push(now() - t);
      timer.codec_s += now() - t;
      samples += pcm.length;
      if (pcm.length) firstAudio ??= now() - t0;  // a codec that looks ahead returns nothing for its first frames
      this._update(t0, timer, calls, codec.calls, samples, firstAudio);
      return pcm;
    };
    try {
      let context = [...this.context];
      for await (const text of this._plan()) {
        context = this._fitContext(text, context);
        const start = this.codes.length;
        let pending = [], chunk = 0;
        for await (const frame of this._frames(text, context, rng, timer, calls)) {
          this.codes.push(frame);
          if (this.contract.isStop(frame)) break;  // kept in `codes`, not audio
          pending.push(frame);
          if (pending.length === this.schedule[Math.min(chunk, this.schedule.length - 1)]) {
            const pcm = await emit(pending);
            if (pcm.length) yield pcm;
            pending = [];
            chunk += 1;
          }
        }
        if (pending.length && !this._cancelled()) {
          const pcm = await emit(pending);
          if (pcm.length) yield pcm;
        }
        let spoken = this.codes.slice(start);
        if (spoken.length && this.contract.isStop(spoken[spoken.length - 1])) spoken = spoken.slice(0, -1);
        this.utterances.push({ text, first_frame: start, frames: spoken.length });
        if (this._cancelled()) { this.stopped = true; return; }
        if (rt.prompts.constructor.carriesContext) context = spoken.length ? [this._utterance(text, spoken)] : [];
      }
      if (codec.delay && !this._cancelled()) {  // the audio a look-ahead codec still holds
        const pcm = await emit(null);
        if (pcm.length) yield pcm;
      }
    } finally {
      codec.close();
      this._update(t0, timer, calls, codec.calls, samples, firstAudio);
    }
  }

  _cancelled() { return Boolean(this.signal?.aborted); }

  async *_plan() {
    if (this.sentences == null) { yield* this._split(this.text); return; }
    for await (const s of this.sentences) yield* this._split(s);  // lazily: the source may still be being written
  }

  _split(text) {
    const p = this.rt.prompts, carried = p.constructor.carriesContext;
    const ctxTokens = this.context.length && carried ? p.build(this.context).ids.length : 0;
    const limit = this.rt.rt.max_positions - ctxTokens;
    const tokens = (t) => p.build([...this._fixedContext(), this._utterance(t)]).ids.length;
    const frames = this.maxFrames * this.contract.steps;  // cache positions the frames take
    if (!text.trim()) throw new InputError('text is empty');
    if (tokens(text) + frames <= limit) return [text];
    // leave room for the previous utterance (text and audio) as the next one's context
    return planUtterances(text, (t) => tokens(t) + frames <= Math.floor(limit / 2));
  }

  /** Carry the previous utterance as context while it fits beside the new one; else none. */
  _fitContext(text, context) {
    const p = this.rt.prompts;
    if (!context.length || !p.constructor.carriesContext) return context;
    const n = p.build([...context, this._utterance(text)]).ids.length;
    return n + this.maxFrames * this.contract.steps <= this.rt.rt.max_positions ? context : [];
  }

  _utterance(text, codes = null) {
    return { text, speaker: this.speaker, codes, language: this.language, instruct: this.instruct };
  }

  /** A format that does not carry context still keeps the caller's (a cloned voice) each time. */
  _fixedContext() { return this.rt.prompts.constructor.carriesContext ? [] : [...this.context]; }

  /** Frame codes from the fused graph: embed the prompt once, then one call per frame. */
  async *_frames(text, context, rng, timer, calls) {
    const c = this.contract, rt = this.rt, ort = rt.ort;
    let t = now();
    const prepared = rt.prepare([...context, this._utterance(text)], this.maxFrames, this.sampling);
    let { embeds, perFrame } = await rt.embed(prepared);
    calls.embed += 1;
    // the environment's buffers made once (WebGPU, Node; null on wasm): the cache bound in place, the
    // noise and logits feeds written into the same buffers every frame
    const device = await rt.graphs.deviceBuffers();
    // the prompt and each frame's steps enter the cache (the Python runtime sizes it the same way);
    // where nothing is bound in place each present is the next call's past
    const positions = prepared.tokens + prepared.maxFrames * c.steps;
    // WebGPU graph capture (kv.js CapturedFrame): the runtime's cache, the frames replayed after the prompt
    let captured = rt.captured?.fits(positions) ? rt.captured : null;
    const cache = captured ? captured.begin() : c.newCache(ort, 1, positions, device), owned = !captured;
    const sampling = c.samplingFeeds(ort, this.sampling), logits = c.logitsState(ort, this.sampling, device);
    const greedy = c.greedy(this.sampling), noiseDims = [1, c.codebooks, c.noiseVocab];
    const zeros = greedy && !device ? new Float32Array(c.codebooks * c.noiseVocab) : null;
    const noiseBuffer = device?.zeros(noiseDims) ?? null;  // zeros: all a greedy frame reads
    try {
      for (let n = 0; n < prepared.maxFrames; n++) {
        if (this._cancelled()) return;
        // greedy: the graph ignores the noise, so none is drawn (Python draws and discards it)
        let noise = noiseBuffer;
        if (!greedy && device) device.write(noiseBuffer, drawNoise(rng, c.codebooks, c.noiseVocab));
        else if (!device) noise = new ort.Tensor('float32', greedy ? zeros : drawNoise(rng, c.codebooks, c.noiseVocab), noiseDims);
        const extra = { ...perFrame[Math.min(n, perFrame.length - 1)], ...logits?.feeds() };
        const feeds = c.feeds(ort, embeds, cache.lengths, sampling, noise, extra);
        let out = null;
        if (captured && n > 0) {
          try { out = await captured.run(rt.graphs, feeds); } catch (e) {
            // refused at its first replay: this frame and the rest run uncaptured on the same cache
            captured.handBack();
            feeds[c.embedsIn] = captured.inputs[c.embedsIn];  // the call's input, copied in before it failed
            rt.refuseCapture(e);
            captured = null;
          }
        }
        out ??= await c.run(rt.graphs, feeds, cache);
        calls.frame += 1;
        cache.lengths[0] += c.advance(embeds.dims[1]);
        dispose([embeds]);
        const codes = Array.from(out.codes.data, Number);  // [1, K]
        embeds = out.embeds;
        logits?.update(codes);
        this.timings.frame_s.push(now() - t);
        timer[n === 0 ? 'prefill_s' : 'frames_s'] += now() - t;
        yield codes;
        t = now();
      }
    } finally {
      if (owned) cache.dispose();
      logits?.dispose();
      dispose([embeds, noiseBuffer]);
    }
  }

  _update(t0, timer, calls, codecCalls, samples, firstAudio) {
    const wall = now() - t0, frames = this.codes.length, audio = samples / this.rt.rt.sample_rate;
    Object.assign(this.stats, {
      frames, utterances: this.utterances.length || 1, audio_s: round(audio), wall_s: round(wall),
      rtf: audio ? round(wall / audio) : null, first_audio_s: firstAudio == null ? null : round(firstAudio),
      // generation calls only: the prompt's embed call and the codec calls are counted apart
      runtime_calls_per_frame: frames ? round(calls.frame / frames) : null,
      embed_calls: calls.embed, codec_calls: codecCalls, chunk_frames: this.schedule,
      stages: Object.fromEntries(Object.entries(timer).map(([k, v]) => [k, round(v)])),
      stopped: this.stopped,
    });
  }
}
