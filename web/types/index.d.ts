// Type declarations of voxport-web's public API (src/index.js).

export type Device = 'wasm' | 'webgpu' | 'cpu';
export type Dtype = 'fp32' | 'fp16' | 'q8' | 'q4' | 'q4f16' | (string & {});

export interface ProgressEvent {
  status: 'files' | 'progress' | 'warmup' | 'ready';
  /** 'files': every file the load fetches, with its size */
  files?: { path: string; bytes: number }[];
  total?: number;
  /** 'progress': one file's bytes so far; cached: it came from the cache */
  path?: string;
  loaded?: number;
  bytes?: number;
  totalLoaded?: number;
  cached?: boolean;
  /** 'warmup': the streaming-codec calls made so far of `of` (absent on the first 'warmup' event) */
  codecCalls?: number;
  of?: number;
}

export interface LoadOptions {
  /** 'wasm' | 'webgpu' in a browser (default: WebGPU on a hardware adapter, else wasm); 'cpu' in Node */
  device?: Device;
  /** a precision variant of the artifact (default: the fastest on the device among those it has) */
  dtype?: Dtype;
  /** wasm threads (default: the device's cores when cross-origin isolated) or onnxruntime-node's intra-op threads */
  threads?: number;
  /** the onnxruntime module (onnxruntime-web or onnxruntime-node); default: imported by environment */
  ort?: unknown;
  onProgress?: (e: ProgressEvent) => void;
  /** where onnxruntime-web finds its .wasm files (ort.env.wasm.wasmPaths) */
  wasmPaths?: string | Record<string, string>;
  /** keep fetched files in Cache Storage (browser; default true) */
  cache?: boolean;
  /** Node: where files of an http(s) artifact are kept (default: the OS temp dir) */
  cacheDir?: string;
  /** speak one frame before returning, so the first request does not pay the sessions' first-run costs,
   * then (wasm) call the streaming codec 32 more times while V8 optimizes onnxruntime's code (default true);
   * a number: that many codec calls after the frame; false: no warm-up */
  warmup?: boolean | number;
  /** WebGPU: replay the frame under graph capture where the artifact has its capture graph (default false) */
  capture?: boolean;
}

export interface Voice {
  name: string;
  /** what the clip says: the model reads it beside the clip (required before speaking) */
  text: string;
  /** the clip's codec codes, frames x codebooks */
  codes: number[][];
  /** the speaker encoder's vector, where the model has one */
  vector: Float32Array | null;
}

export interface SpeakOptions {
  /** a speaker of `voices`, or a Voice from cloneVoice */
  voice?: string | number | Voice | null;
  /** with a cloned Voice: the speaker it speaks as, where the model takes both */
  speaker?: string | number | null;
  language?: string | null;
  instruct?: string | null;
  /** frames per utterance (12.5 a second for Mimi models); default 125 */
  maxFrames?: number;
  /** 0: greedy; null or absent: the model's own (the manifest's sampling defaults) */
  temperature?: number | null;
  topK?: number | null;
  topP?: number | null;
  repetitionPenalty?: number | null;
  /** the noise generator's seed (numpy's default_rng: the same codes as `voxport speak --seed`) */
  seed?: number;
  /** frames per codec call: a number, or a schedule (the i-th chunk of an utterance has schedule[i]
   * frames, the last repeating); default: the artifact's `codec_stream.chunk_schedule`, else 1 */
  chunkFrames?: number | number[];
  /** ends generation before the next frame; the audio so far is kept and `stopped` is true */
  signal?: AbortSignal;
  /** generate(): each PCM chunk as it is decoded */
  onAudio?: (pcm: Float32Array) => void;
}

export interface Stats {
  frames: number;
  utterances: number;
  audio_s: number;
  wall_s: number;
  rtf: number | null;
  first_audio_s: number | null;
  runtime_calls_per_frame: number | null;
  embed_calls: number;
  codec_calls: number;
  /** the chunk schedule in force */
  chunk_frames: number[];
  stages: { prefill_s: number; frames_s: number; codec_s: number };
  stopped: boolean;
  device: Device;
  dtype: Dtype;
  threads: number;
  /** WebGPU graph capture: 'on', 'off', or why onnxruntime refused it (the frames then ran uncaptured) */
  graph_capture: string;
  /** per graph: calls and milliseconds in onnxruntime */
  graph_ms: Record<string, { calls: number; ms: number }>;
}

export interface Utterance { text: string; first_frame: number; frames: number }

export interface Generation {
  audio: Float32Array;
  sampleRate: number;
  codes: number[][];
  utterances: Utterance[];
  stats: Stats;
  stopped: boolean;
  /** wall time of every frame call and codec call, in seconds */
  timings: { frame_s: number[]; codec_s: number[] };
}

export interface SpeechStream extends AsyncIterable<Float32Array> {
  readonly codes: number[][];
  readonly utterances: Utterance[];
  readonly stats: Stats;
  readonly stopped: boolean;
  /** wall time of every frame call and codec call, in seconds */
  readonly timings: { frame_s: number[]; codec_s: number[] };
}

export declare class VoxportTTS {
  static load(source: string | URL, opts?: LoadOptions): Promise<VoxportTTS>;
  readonly device: Device;
  readonly dtype: Dtype;
  /** the precisions this artifact has for the graphs the library runs */
  readonly dtypes: Dtype[];
  readonly threads: number;
  readonly sampleRate: number;
  readonly frameRate: number;
  /** the model's speakers (the first is the default); [] for a model that only clones a voice */
  readonly voices: (string | number)[];
  /** languages a model takes ('auto' first); [] where it speaks the language of the text */
  readonly languages: string[];
  readonly takesInstruct: boolean;
  /** why a voice clip is refused; null where the model clones a voice */
  readonly cloneRefusal: string | null;
  readonly manifest: Record<string, unknown>;
  /** the last request's stats */
  readonly stats: Stats | null;
  /** the port of voxport's Python runtime underneath (prompts, contract, graphs), for tools and tests */
  readonly runtime: unknown;
  cloneVoice(audio: ArrayBuffer | Uint8Array | Float32Array, opts?: { text?: string; name?: string }): Promise<Voice>;
  generate(text: string | AsyncIterable<string>, opts?: SpeakOptions): Promise<Generation>;
  stream(text: string | AsyncIterable<string>, opts?: SpeakOptions): SpeechStream;
  release(): Promise<void>;
}

/** float32 -> 16-bit samples rounded as voxport's Python pcm16 (and libsndfile's PCM_16 WAV) */
export declare function pcm16(pcm: Float32Array): Int16Array;
/** a 16-bit mono WAV file */
export declare function toWav(pcm: Float32Array, sampleRate: number): Uint8Array;
export declare function readWav(bytes: ArrayBuffer | Uint8Array, name?: string): { samples: Float32Array; sampleRate: number };
export declare function splitSentences(text: string): string[];
export declare function completeSentences(text: string): [string[], string];
export declare function planUtterances(text: string, fits: (text: string) => boolean): string[];
export declare function defaultDtype(available: Dtype[], device: Device, f16?: boolean): Dtype;
export declare const PREFERRED_DTYPES: Record<Device, Dtype[]>;
export declare class NumpyRng {
  constructor(seed?: number);
  nextUint32(): number;
  fillFloat32(out: Float32Array): Float32Array;
}
export declare function detectDevice(): Promise<{ device: Device; webgpu?: boolean; fallback?: boolean; f16: boolean; adapter?: string; reason: string }>;
export declare class InputError extends Error {}
export declare class ArtifactError extends Error {}
