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
