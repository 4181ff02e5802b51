// An artifact's runtime: sessions, prompts, voice prompts and the codec, all from the manifest (a port
// of voxport/runtime/runtime.py's fused-path half; the step-graph loop stays in Python, where parity
// uses it). Streaming generation is stream.js.
import { FrameContract, f32, i64 } from './contract.js';
import { ArtifactError, InputError } from './errors.js';
import { checkReference } from './audio.js';
import { pyRepr } from './chunking.js';
import { CapturedFrame } from './kv.js';

/** Why the model takes no reference clip (null where it does): no codec encoder graph, or a prompt
 * format that clones no voice (a named-speaker model). */
export function voicePromptRefusal(manifest) {
  const gen = manifest.runtime.generation;
  if (!manifest.graphs[gen.codec.encoder]) return 'it has no codec encoder graph';
  if (gen.prompt.voice_clone === false) {
    return `it speaks as its named speakers (${[...gen.speakers.names].sort().join(', ')}) and clones no voice`;
  }
  return null;
}

export class Runtime {
  /** frameGraph: the contract's capture graph where `useCapture` is to run it, else the frame graph */
  constructor(graphs, prompts, frameGraph = null) {
    this.graphs = graphs;
    this.ort = graphs.ort;
    this.rt = graphs.rt;
    this.contract = new FrameContract(this.rt);
    if (frameGraph) this.contract.graph = frameGraph;
    this.codec = this.rt.generation.codec;
    this.prompts = prompts;
    this.captured = null;  // kv.js CapturedFrame
    this.captureStatus = 'off';  // 'on', 'off', or why the adapter refused it
  }

  /** The captured session failed a call (its first replay): frames go on uncaptured in the capture
   * graph's other session, on the same cache; captureStatus says why. */
  refuseCapture(error) {
    this.captureStatus = `refused at its first call: ${String(error.message || error).slice(0, 300)}`;
    this.refused = this.captured;  // its buffers hold the utterance going on: freed with the sessions
    this.captured = null;
  }

  /** WebGPU graph capture of the contract's capture graph (already loaded uncaptured: the prompt runs
   * there). Refused (the adapter's or onnxruntime's reason kept in captureStatus): the frame graph is
   * loaded and run instead, and the capture graph's session released. */
  async useCapture() {
    const name = this.contract.capture, { session, why } = await this.graphs.captureSession(name);
    if (session) {
      const capacity = Math.min(this.contract.capacity, this.rt.max_positions);  // the longest utterance
      this.captured = new CapturedFrame(this.ort, this.contract, session, await this.graphs.deviceBuffers(), capacity);
      this.captureStatus = 'on';
      return;
    }
    this.captureStatus = `refused: ${why}`;
    this.contract.graph = this.rt.generation.frame.graph;
    await this.graphs.load([this.contract.graph]);
    await this.graphs.sessions[name]?.release?.();
    delete this.graphs.sessions[name];
  }

  /** The graphs the streaming path runs: prompt, frame, streaming codec. */
  get streamingGraphs() { return [this.prompts.graph, this.contract.graph, this.rt.codec_stream.graph]; }

  /** What stays on the GPU between calls: the outputs that feed back (the contract's KV cache and next
   * input, the codec's state), except a zero-size state tensor (no buffer to keep). */
  static keepOnDevice(rt) {
    const c = new FrameContract(rt), s = rt.codec_stream;
    return { [c.graph]: c.fedBack, ...(c.capture ? { [c.capture]: c.fedBack } : {}), [s.graph]: s.state.filter((e) => !e.shape.includes(0)).map((e) => e.output) };
  }

  /** CSM's speaker 0, a named model's first speaker; null where the model has no named speakers. */
  get defaultSpeaker() {
    const { kind, names } = this.rt.generation.speakers;
    if (!names.length) return null;
    return kind === 'integer' ? Number(names[0]) : names[0];
  }

  /** The speaker as the prompt format takes it, after checking every voice option (Python's messages). */
  checkVoice(speaker, language = null, instruct = null, reference = false) {
    const spec = this.rt.generation.speakers;
    if (speaker == null) speaker = reference && spec.kind === 'name' ? null : this.defaultSpeaker;
    else if (spec.kind === 'integer') {
      if (!/^\d+$/.test(String(speaker).replace(/^-+/, ''))) {
        throw new InputError(`speaker ${typeof speaker === 'string' ? pyRepr(speaker) : speaker}: this model's speakers are integers `
          + `(trained on ${spec.names.join(', ')})`);
      }
      speaker = Number(speaker);
    }
    this.prompts.check({ text: '-', speaker, language, instruct });
    const why = reference ? voicePromptRefusal(this.graphs.manifest) : null;
    if (why) throw new InputError(`this model does not take a reference clip: ${why}`);
    return speaker;
  }

  /** mono float32 at the codec rate -> codes [frames][K] */
  async encodeAudio(samples) {
    const out = await this.graphs.run(this.codec.encoder, { input_values: f32(this.ort, samples, [1, 1, samples.length]) });
    const t = Object.values(out)[0];  // [1, K, frames] int64
    const [, k, n] = t.dims;
    return Array.from({ length: n }, (_, f) => Array.from({ length: k }, (_, j) => Number(t.data[j * n + f])));
  }

  /** mono float32 at the codec rate -> the speaker encoder's vector [hidden] */
  async speakerVector(samples) {
    const need = this.codec.speaker_encoder_min_samples ?? 0, rate = this.rt.sample_rate;
    if (samples.length < need) {
      throw new InputError(`reference audio is ${(samples.length / rate).toFixed(2)} s; the speaker encoder needs at least `
        + `${(need / rate).toFixed(2)} s`);
    }
    const out = await this.graphs.run(this.codec.speaker_encoder, { input_values: f32(this.ort, samples, [1, samples.length]) });
    return Object.values(out)[0].data.slice();
  }

  /** A voice prompt from mono samples at the codec rate: its codes (and speaker vector where the model
   * has a speaker encoder), as Runtime.reference. */
  async reference(samples, text, speaker = null, name = 'reference audio') {
    if (!this.graphs.manifest.graphs[this.codec.encoder]) throw new ArtifactError('this artifact has no codec encoder graph; voice prompts need it');
    // leave at least half the context for the new utterance
    checkReference(samples, this.rt.sample_rate, this.rt.max_positions / 2 / this.rt.frame_rate, name);
    const vector = this.codec.speaker_encoder ? await this.speakerVector(samples) : null;
    return { text, speaker, codes: await this.encodeAudio(samples), vector };
  }

  /** The checked prompt of these turns (context first, the new utterance last). */
  prepare(turns, maxFrames, sampling) {
    this.contract.samplingFeeds(this.ort, sampling);  // checks the settings against every sampling group
    const u = turns[turns.length - 1];
    if (!u.text.trim()) throw new InputError('text is empty');
    if (!(maxFrames >= 1)) throw new InputError(`max frames must be >= 1, got ${maxFrames}`);
    this.prompts.check(u);
    const inputs = this.prompts.build(turns);
    const n = inputs.ids.length, limit = this.rt.max_positions;
    if (n + 1 > limit) {
      throw new InputError(`prompt is ${n} tokens; this model's context is ${limit} positions `
        + '(text + context audio frames + generated frames); shorten the text or the reference');
    }
    const fits = Math.floor((limit - n) / this.contract.steps);  // a frame call may take several positions
    return { inputs, tokens: n, maxFrames: Math.min(maxFrames, fits), trailing: this.prompts.trailing(turns),
      vectors: this.prompts.vectors(turns) };
  }

  async embedIds(ids, codes) {
    const [a, b] = this.prompts.inputs(), n = ids.length;
    const feeds = { [a]: i64(this.ort, ids, [1, n]) };
    if (b) feeds[b] = i64(this.ort, codes.flat(), [1, n, codes[0].length]);  // a format with a codes track
    const out = await this.graphs.run(this.prompts.graph, feeds);
    return Object.values(out)[0];
  }

  /** The prompt's embeddings [1, S, H] (speaker vectors added) and each frame's extra inputs where the
   * contract feeds text per frame (the last repeats); [{}] where it feeds none. */
  async embed(prepared) {
    const embeds = await this.embedIds(prepared.inputs.ids, prepared.inputs.codes);
    const h = embeds.dims[2];
    for (const [row, vector] of prepared.vectors) vector.forEach((v, j) => { embeds.data[row * h + j] += v; });
    if (prepared.trailing == null) return { embeds, perFrame: [{}] };
    const p = this.rt.generation.prompt;
    const text = await this.embedIds(prepared.trailing, prepared.trailing.map(() => new Array(p.groups).fill(p.none)));
    const [entry] = this.contract.perFrame;  // one source, "trailing_text"
    return { embeds, perFrame: prepared.trailing.map((_, i) => ({ [entry.input]: f32(this.ort, text.data.slice(i * h, (i + 1) * h), [1, 1, h]) })) };
  }
}
