// The frame graph's static KV cache in the runtime (a port of voxport/runtime/kv.py). The manifest's
// frame cache (layout "static") names a past input and a present output per layer and kv, both
// [slots, kv_heads, capacity, head_dim], and a lengths input [slots]. Where the environment can bind one
// buffer as both the past input and the present output (a GPU buffer on WebGPU: GroupQueryAttention
// sees past and present share memory and writes each call's new positions in place, no cache is
// allocated per frame; a typed array in onnxruntime-node) it is. onnxruntime-web's wasm build cannot (it
// copies every input into its heap and never copies a preallocated output back), so there each present
// comes back as a new tensor and is fed in as the next call's past.
import { ArtifactError, InputError } from './errors.js';

const fill = (template, layer, kv) => template.replace('{layer}', layer).replace('{kv}', kv);

/** [past input names, present output names], in the same order, from a manifest cache entry. */
export function cacheNames(spec) {
  const pairs = [];
  for (let i = 0; i < spec.layers; i++) for (const kv of spec.kv) pairs.push([i, kv]);
  return [pairs.map(([i, kv]) => fill(spec.input, i, kv)), pairs.map(([i, kv]) => fill(spec.output, i, kv))];
}

export class StaticCache {
  /** Buffers for `slots` streams of at most `capacity` positions each, and each row's length.
   * device: the environment's buffers (graphs.deviceBuffers), bound in place; null: CPU arrays, replaced
   * by each call's presents. */
  constructor(ort, spec, slots, capacity, device = null) {
    if (spec.layout !== 'static') {
      throw new ArtifactError("this artifact's frame graph grows its KV cache (exported before voxport kept it "
        + 'in static buffers); re-export it');
    }
    if (!(capacity >= 1 && capacity <= spec.capacity)) throw new InputError(`capacity ${capacity} outside 1..${spec.capacity}`);
    [this.inputs, this.outputs] = cacheNames(spec);
    this.lengthsInput = spec.lengths;
    this.capacity = capacity;
    this.slots = slots;
    this.inPlace = Boolean(device);
    const dims = [slots, spec.kv_heads, capacity, spec.head_dim], size = dims.reduce((a, b) => a * b, 1);
    this.buffers = this.inputs.map(() => (device ? device.zeros(dims) : new ort.Tensor('float32', new Float32Array(size), dims)));
    this.lengths = new Array(slots).fill(0);
  }

  /** The past inputs. */
  feeds() { return Object.fromEntries(this.inputs.map((n, i) => [n, this.buffers[i]])); }

  /** The present outputs bound to the pasts' own buffers ({} where nothing is bound in place). */
  fetches() { return this.inPlace ? Object.fromEntries(this.outputs.map((n, i) => [n, this.buffers[i]])) : {}; }

  /** After a call: the presents are the next call's pasts (bound in place they already are). */
  update(out) {
    if (this.inPlace) return;
    dispose(this.buffers);
    this.buffers = this.outputs.map((n) => out[n]);
  }

  dispose() { dispose(this.buffers); this.buffers = []; }
}

/** Tensors on the GPU are released when replaced, or the allocator fragments (CPU ones are garbage
 * collected). */
export function dispose(tensors) {
  for (const t of tensors) if (t?.location === 'gpu-buffer') t.dispose();
}

/** The frame graph under WebGPU graph capture (the manifest's `frame.capture` graph, in a session made
 * with enableGraphCapture): onnxruntime-web records the first runs' GPU commands and replays them, with
 * no per-dispatch work on the CPU, on the buffers bound at its first run, with that run's shapes. So each
 * input lives in a GPU buffer made once (at the first captured call, from its feed's shape), every call
 * copies its feeds into those (queue.writeBuffer, or a GPU copy for a GPU tensor), and the static cache
 * is one buffer per name for the runtime's life, its capacity the longest an utterance may be. The prompt
 * (another shape) runs in the uncaptured session of the same graph. The Python runtime has no
 * counterpart: onnxruntime's CPU build captures nothing.
 *
 * Two ways around onnxruntime-web 1.30 (wasm-core-impl.ts): it binds a capture session's inputs and
 * outputs at its first run only, and releases the handles of the caller's GPU buffers after every run,
 * so from the second run on a caller's buffer bound as an output is no longer found ("Cannot set
 * properties of undefined (setting 'Symbol(gpuBufferMetadata)')"). Buffers onnxruntime made itself
 * keep their handles: the cache is the prompt run's own present outputs (adopted at the first frame,
 * later prompts copied into them), and codes and next embeds come back in onnxruntime's buffers. */
export class CapturedFrame {
  /** session: the captured one (Graphs.captureSession); device: graphs.deviceBuffers(). */
  constructor(ort, contract, session, device, capacity) {
    Object.assign(this, { ort, contract, session, device, capacity });
    this.kv = null;  // the bound cache buffers, adopted from the first prompt's presents
    this.inputs = {};
    this.calls = 0;
  }

  /** A new utterance: its prompt runs uncaptured on a cache whose presents come back as new GPU tensors. */
  begin() {
    this.prompt = this.contract.newCache(this.ort, 1, this.capacity);
    this.fresh = true;
    return this.prompt;
  }

  /** After a failed call: the uncaptured session goes on from the frames run so far. */
  handBack() {
    if (!this.fresh) this.prompt.buffers = [...this.kv];
    this.fresh = true;
  }

  /** Whether an utterance of `positions` cache positions fits the runtime's cache. */
  fits(positions) { return positions <= this.capacity; }

  /** One frame call (one position of input): {codes: {data} [1, K], embeds: a GPU tensor}. */
  async run(graphs, feeds) {
    const d = this.device, c = this.contract;
    if (this.fresh) {  // the first frame after a prompt
      if (!this.kv) this.kv = this.prompt.buffers;
      else {
        this.prompt.buffers.forEach((b, i) => d.copy(b, this.kv[i]));
        dispose(this.prompt.buffers);
      }
      this.prompt.buffers = [];
      this.fresh = false;
    }
    for (const [name, t] of Object.entries(feeds)) {
      const fixed = (this.inputs[name] ??= d.zeros(t.dims, t.type));
      if (t.location === 'gpu-buffer') d.copy(t, fixed);
      else d.write(fixed, t.data);
    }
    const cache = Object.fromEntries(this.prompt.inputs.map((n, i) => [n, this.kv[i]]));
    const bound = Object.fromEntries(this.prompt.outputs.map((n, i) => [n, this.kv[i]]));
    const out = await graphs.run(c.graph, { ...this.inputs, ...cache }, { [c.codes]: null, [c.embedsOut]: null, ...bound },
      this.session);
    this.calls += 1;
    const codes = await d.read(out[c.codes]);
    dispose([out[c.codes]]);
    return { codes: { data: codes }, embeds: out[c.embedsOut] };
  }

  dispose() {
    dispose([...(this.kv ?? []), ...Object.values(this.inputs)]);
    this.kv = null;
  }
}
