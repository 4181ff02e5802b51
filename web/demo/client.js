// The page's side of the worker: request/response by id, plus streamed events (progress, audio, frame).
export class ModelClient {
  constructor() {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.pending = new Map();
    this.events = {};
    this.nextId = 1;
    this.worker.onmessage = ({ data }) => {
      if (data.type === 'result' || data.type === 'error') {
        const p = this.pending.get(data.id);
        this.pending.delete(data.id);
        if (data.type === 'result') p?.resolve(data.result);
        else p?.reject(Object.assign(new Error(data.message), { kind: data.kind }));
      } else {
        this.events[data.type]?.(data);
      }
    };
    this.worker.onerror = (e) => { for (const p of this.pending.values()) p.reject(new Error(`worker: ${e.message}`)); };
  }

  on(type, fn) { this.events[type] = fn; }

  call(type, args = {}, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...args, type, id }, transfer);
    });
  }

  stop() { this.worker.postMessage({ type: 'stop' }); }

  /** End the worker; requests still running are rejected, not left hanging. */
  close() {
    this.worker.terminate();
    for (const p of this.pending.values()) p.reject(new Error('cancelled: another model is being loaded'));
    this.pending.clear();
  }
}
