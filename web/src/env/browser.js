// The browser's environment (main thread or worker): artifact files fetched with progress, kept in Cache
// Storage and checked against the manifest's sha256 before use; sessions from onnxruntime-web.
import { ArtifactError, InputError } from '../runtime/errors.js';

const CACHE = 'voxport-artifacts-v1';

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export function damaged(entry, bytes, hash) {
  if (bytes.byteLength !== entry.bytes) return `${entry.path}: damaged (${bytes.byteLength} bytes, the manifest says ${entry.bytes})`;
  if (hash !== entry.sha256) return `${entry.path}: damaged (sha256 differs from the manifest)`;
  return null;
}

async function readWithProgress(response, total, onProgress) {
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    onProgress(loaded);
  }
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.byteLength; }
  return out;
}

export async function fetchJson(url) {
  let r;
  try { r = await fetch(url, { cache: 'no-store' }); } catch (e) { throw new ArtifactError(`${url}: could not be fetched (${e.message})`); }
  if (!r.ok) throw new ArtifactError(`${url}: HTTP ${r.status}`);
  try { return await r.json(); } catch { throw new ArtifactError(`${url}: not valid JSON`); }
}

/** Files under `base` (a URL); a cache entry is keyed by URL + sha256, so a file whose hash changes in the
 * manifest is fetched again and a cached copy that no longer matches is dropped. */
export function browserFiles(base, { cache = true } = {}) {
  return {
    where: base,
    manifest: () => fetchJson(new URL('manifest.json', base)),
    async get(entry, onProgress = () => {}) {
      const url = new URL(entry.path, base).href;
      const key = `${url}?sha256=${entry.sha256}`;
      const store = cache && globalThis.caches ? await caches.open(CACHE) : null;
      const hit = store && await store.match(key);
      if (hit) {
        const bytes = new Uint8Array(await hit.arrayBuffer());
        if (!damaged(entry, bytes, await sha256Hex(bytes))) { onProgress(bytes.byteLength, true); return bytes; }
        await store.delete(key);
      }
      let response;
      try { response = await fetch(url, { cache: 'no-store' }); } catch (e) {
        throw new ArtifactError(`${entry.path}: could not be fetched (${e.message})`);
      }
      if (!response.ok) {
        throw new ArtifactError(`${entry.path}: ${response.status === 404 ? 'missing' : 'not served'} (HTTP ${response.status} for ${url})`);
      }
      const bytes = await readWithProgress(response, entry.bytes, (n) => onProgress(n, false));
      const problem = damaged(entry, bytes, await sha256Hex(bytes));
      if (problem) throw new ArtifactError(problem);
      if (store) { try { await store.put(key, new Response(bytes)); } catch { /* quota: works uncached */ } }
      return bytes;
    },
  };
}

/** WebGPU when an adapter is there and it is not a software fallback (30-50x slower than wasm). */
export async function detectDevice() {
  if (!globalThis.navigator?.gpu) return { device: 'wasm', f16: false, reason: 'wasm: no WebGPU (navigator.gpu)' };
  let adapter = null;
  try { adapter = await navigator.gpu.requestAdapter(); } catch { /* none */ }
  if (!adapter) return { device: 'wasm', f16: false, webgpu: false, reason: 'wasm: WebGPU gave no adapter' };
  const info = adapter.info ?? {};
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
  const f16 = adapter.features.has('shader-f16');
  const fallback = Boolean(info.isFallbackAdapter);
  return { device: fallback ? 'wasm' : 'webgpu', webgpu: true, fallback, f16, adapter: name,
    reason: fallback ? `wasm: the WebGPU adapter (${name}) is a software fallback, slower than wasm`
      : `WebGPU: adapter ${name}${f16 ? ', shader-f16' : ''}` };
}

// Streaming-codec calls a wasm page's load makes after its one-frame warm-up. V8 runs onnxruntime's
// wasm on its baseline tier first and recompiles the hot functions in the background: in fresh pages
// (marvis-250m fp32, 2 threads, 2 cores) the first utterance's codec took 45-48 ms a call on average,
// 32 after 32 calls here (1.7 s of loading that took 65 s), and about 20 once a page had made 36.
export const WASM_CODEC_WARMUP = 32;

/** onnxruntime-web sessions; threads: wasm threads (cross-origin isolation needed for more than one). */
export function browserSessions(ort, { threads, wasmPaths }) {
  const isolated = globalThis.crossOriginIsolated === true;
  ort.env.wasm.numThreads = isolated ? threads : 1;
  if (wasmPaths) ort.env.wasm.wasmPaths = wasmPaths;
  return {
    threads: ort.env.wasm.numThreads,
    /** WebGPU graph capture is there to ask for (the adapter may still refuse a graph: createSession throws) */
    capture: (device) => device === 'webgpu',
    async createSession(files, { device, keepOnDevice, outputs, capture = false }) {
      const [main, ...external] = files;
      const options = {
        executionProviders: [device], graphOptimizationLevel: 'all', logSeverityLevel: 3,
        externalData: external.map((f) => ({ path: f.entry.path.split('/').pop(), data: f.data })),
      };
      if (capture) {
        // onnxruntime-web 1.30 hands enableGraphCapture to the WebGPU EP only when the EP is an object;
        // every input and output is then a GPU buffer the caller binds (kv.js CapturedFrame)
        Object.assign(options, { executionProviders: [{ name: 'webgpu' }], enableGraphCapture: true });
      } else if (device === 'webgpu' && keepOnDevice.length) {
        // what goes straight back in stays on the GPU between calls; the rest comes back to the CPU
        options.preferredOutputLocation = Object.fromEntries(outputs.map((o) => [o, keepOnDevice.includes(o) ? 'gpu-buffer' : 'cpu']));
      }
      try {
        return await ort.InferenceSession.create(main.data, options);
      } catch (e) {
        const why = String(e.message || e);
        // wasm32 has a 4 GB heap: a large fp32 model does not fit (marvis-250m fp32: bad_alloc)
        const hint = /bad_alloc|out of memory/i.test(why) ? '; out of memory: try a smaller precision or WebGPU' : '';
        throw new ArtifactError(`${main.entry.path}: onnxruntime-web could not load it (${why.slice(0, 200)})${hint}`);
      }
    },
    /** WebGPU: float32 GPU buffers made once and reused across calls: the static cache, bound as both the
     * past input and the present output (GroupQueryAttention writes it in place), and the inputs the
     * runtime writes every frame (queue.writeBuffer: no staging buffer is made, unlike a CPU feed, which
     * onnxruntime-web 1.30 uploads through a new one every call). wasm: none. onnxruntime-web 1.30's wasm
     * build copies every input into its heap and never copies a preallocated output back
     * (microsoft/onnxruntime#25786): bound there, the cache would never see a call's new positions. */
    async deviceBuffers(device) {
      if (device !== 'webgpu') return null;
      const gpu = await ort.env.webgpu.device;  // the sessions' own device (created with the first session)
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
      const staging = new WeakMap();  // a GPU buffer -> the mappable buffer `read` copies it through, made once
      const bytes = (t) => BYTES[t.type] * t.dims.reduce((a, b) => a * b, 1);
      return {
        zeros(dims, type = 'float32') {  // WebGPU zeroes a buffer at creation
          const size = BYTES[type] * dims.reduce((a, b) => a * b, 1);
          const buffer = gpu.createBuffer({ size: Math.ceil(size / 16) * 16, usage });
          return ort.Tensor.fromGpuBuffer(buffer, { dataType: type, dims, dispose: () => buffer.destroy() });
        },
        // one queue: the write lands after the last call's work and before the next call's
        write(tensor, data) { gpu.queue.writeBuffer(tensor.gpuBuffer, 0, data.buffer, data.byteOffset, data.byteLength); },
        /** a GPU tensor's bytes into another's, on the GPU (no buffer made) */
        copy(src, dst) {
          const encoder = gpu.createCommandEncoder();
          encoder.copyBufferToBuffer(src.gpuBuffer, 0, dst.gpuBuffer, 0, Math.min(bytes(src), bytes(dst)));
          gpu.queue.submit([encoder.finish()]);
        },
        /** a GPU tensor's data on the CPU, through a mappable buffer made at its first read (onnxruntime's
         * own download makes a new one every call) */
        async read(tensor) {
          const size = bytes(tensor);
          let out = staging.get(tensor.gpuBuffer);
          if (!out) {
            out = gpu.createBuffer({ size: Math.ceil(size / 16) * 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
            staging.set(tensor.gpuBuffer, out);
          }
          const encoder = gpu.createCommandEncoder();
          encoder.copyBufferToBuffer(tensor.gpuBuffer, 0, out, 0, size);
          gpu.queue.submit([encoder.finish()]);
          await out.mapAsync(GPUMapMode.READ, 0, size);
          const data = new TYPED[tensor.type](out.getMappedRange(0, size).slice(0));
          out.unmap();
          return data;
        },
      };
    },
  };
}

const BYTES = { float32: 4, int32: 4, int64: 8 };
const TYPED = { float32: Float32Array, int32: Int32Array, int64: BigInt64Array };

/** Audio file bytes (any format the browser decodes) -> mono Float32Array at sampleRate (a page: a
 * worker has no audio decoder). */
export async function decodeAudio(bytes, sampleRate, name = 'audio') {
  // a context at the codec rate decodes straight to it (a file already at that rate is untouched)
  const ctx = new OfflineAudioContext(1, 1, sampleRate);
  let buffer;
  try {
    buffer = await ctx.decodeAudioData(bytes instanceof Uint8Array ? bytes.slice().buffer : bytes);
  } catch {
    throw new InputError(`${name}: unsupported or damaged audio; the browser could not decode it (try WAV or MP3)`);
  }
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const ch = buffer.getChannelData(c);
    for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / buffer.numberOfChannels;
  }
  return mono;
}
