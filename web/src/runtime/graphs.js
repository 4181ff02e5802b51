// onnxruntime sessions for the graphs a manifest lists, checked against it before loading (a port of
// voxport/runtime/graphs.py). Where files come from and how a session is made are the environment's
// (env/browser.js: fetch, Cache Storage, onnxruntime-web; env/node.js: the file system and
// onnxruntime-node): this file runs unchanged in both.
import { ArtifactError } from './errors.js';

export const FORMAT_VERSION = 3;

export function checkManifest(m, where) {
  if (!m || typeof m !== 'object' || !m.graphs || !m.runtime) throw new ArtifactError(`${where}: not a voxport manifest`);
  if (m.format_version !== FORMAT_VERSION) {
    const hint = m.format_version < FORMAT_VERSION ? '; re-export it with this voxport (`voxport export`)' : '';
    throw new ArtifactError(`${where}: format_version ${m.format_version}, this runtime reads ${FORMAT_VERSION}${hint}`);
  }
  return m;
}

/** Precisions every one of `names` is available in. */
export function precisions(m, names = Object.keys(m.graphs)) {
  const sets = names.filter((n) => m.graphs[n]).map((n) => new Set(Object.keys(m.graphs[n].variants)));
  return [...sets[0]].filter((d) => sets.every((s) => s.has(d)));
}

/** graph name + dtype -> file entries [{path, sha256, bytes}]; entry 0 is the .onnx, the rest external data. */
export function graphFiles(m, name, dtype) {
  const g = m.graphs[name];
  if (!g) throw new ArtifactError(`manifest has no graph '${name}'`);
  const v = g.variants[dtype];
  if (!v) throw new ArtifactError(`graph '${name}' has no ${dtype} variant (it has ${Object.keys(g.variants).join(', ')})`);
  return v.files;
}

export class Graphs {
  /** env: {ort, files, createSession}; files: {get(entry, onProgress) -> verified bytes}. */
  constructor(env, manifest, { dtype, device, keepOnDevice = {} }) {
    Object.assign(this, { env, ort: env.ort, manifest, rt: manifest.runtime, dtype, device, keepOnDevice });
    for (const name of Object.keys(manifest.graphs)) graphFiles(manifest, name, dtype);  // a missing variant fails now
    this.sessions = {};
    this.timings = {};  // per graph: {calls, ms, each: [ms of every call]}
  }

  /** Fetch (verified) and create the sessions of `names`, one after another (WebGPU refuses parallel
   * session creation); onProgress({path, loaded, total, totalLoaded, cached}). */
  async load(names, onProgress = () => {}) {
    const entries = names.flatMap((n) => graphFiles(this.manifest, n, this.dtype));
    const total = entries.reduce((a, e) => a + e.bytes, 0);
    const loaded = new Map();
    for (const name of names) {
      const files = [];
      for (const e of graphFiles(this.manifest, name, this.dtype)) {
        files.push({ entry: e, data: await this.env.files.get(e, (n, cached) => {
          loaded.set(e.path, n);
          onProgress({ path: e.path, loaded: n, bytes: e.bytes, cached, total,
            totalLoaded: [...loaded.values()].reduce((a, b) => a + b, 0) });
        }) });
      }
      this.sessions[name] = await this.env.createSession(files, {
        device: this.device, keepOnDevice: this.keepOnDevice[name] ?? [], name,
        outputs: this.manifest.graphs[name].outputs.map((o) => o.name) });
    }
  }

  async session(name) {
    if (!this.sessions[name]) await this.load([name]);
    return this.sessions[name];
  }

  /** A second session of `name` with WebGPU graph capture ({session} or {session: null, why}): its files
   * are the ones `load` fetched (kept in the cache), its runs replay one recorded command stream on
   * buffers bound at its first run (kv.js CapturedFrame). */
  async captureSession(name) {
    if (!this.env.capture?.(this.device)) return { session: null, why: `no graph capture on ${this.device}` };
    const files = [];
    for (const e of graphFiles(this.manifest, name, this.dtype)) files.push({ entry: e, data: await this.env.files.get(e) });
    try {
      const session = await this.env.createSession(files, { device: this.device, keepOnDevice: [], name, capture: true,
        outputs: this.manifest.graphs[name].outputs.map((o) => o.name) });
      (this.extra ??= []).push(session);
      return { session };
    } catch (e) {
      return { session: null, why: String(e.message || e).slice(0, 300) };
    }
  }

  /** The environment's buffers made once and reused across calls ({zeros(dims), write(tensor, data)}: the
   * static KV cache bound in place, the inputs written every frame), or null where it has none
   * (onnxruntime-web's wasm build). */
  async deviceBuffers() {
    if (this._device === undefined) this._device = (await this.env.deviceBuffers?.(this.device)) ?? null;
    return this._device;
  }

  /** outputs by name; fetches (optional): output name -> a preallocated tensor to write, or null;
   * session (optional): another session of `name` (captureSession's) */
  async run(name, feeds, fetches = undefined, session = undefined) {
    const s = session ?? await this.session(name);
    const t = performance.now();
    const out = await (fetches ? s.run(feeds, fetches) : s.run(feeds));
    const ms = performance.now() - t;
    const rec = (this.timings[name] ??= { calls: 0, ms: 0, each: [] });
    rec.calls += 1; rec.ms += ms; rec.each.push(ms);
    return out;
  }

  async release() {
    await Promise.all([...Object.values(this.sessions), ...(this.extra ?? [])].map((s) => s.release?.()));
    this.sessions = {};
    this.extra = [];
  }
}
