// The JS contract pieces for several LM steps per frame, a penalty per codebook range, the token_ids
// prompt and codec noise, on inputs from tests/test_web_units.py (JSON on stdin, answers on stdout).
import { FrameContract, LogitsState } from '../web/src/runtime/contract.js';
import { codecNoise, codecRng } from '../web/src/runtime/codec_stream.js';
import { TokenIdsPrompt } from '../web/src/runtime/prompt.js';

// -Infinity has no JSON: non-finite values go as strings ('-Infinity', which Python's float reads)
// a stand-in for onnxruntime's Tensor: the fields the contract sets
const ort = { Tensor: class { constructor(type, data, dims) { Object.assign(this, { type, data, dims }); } } };

let input = '';
for await (const chunk of process.stdin) input += chunk;
const req = JSON.parse(input);
const answer = (f) => { try { return f(); } catch (e) { return { error: e.message, kind: e.name }; } };

const logits = req.logits.map(({ spec, vocab, penalty, frames }) => {
  const s = new LogitsState(ort, spec, vocab, penalty);
  frames.forEach((f) => s.update(f));
  return Object.fromEntries(Object.entries(s.feeds()).map(([k, t]) => [k, { dims: t.dims, data: Array.from(t.data, (v) => (Number.isFinite(v) ? v : String(v))) }]));
});
const prompt = new TokenIdsPrompt({ tokenizer: req.prompt.tokenizer }, req.prompt.rt);
process.stdout.write(JSON.stringify({
  advance: req.advance.map(({ rt, seq }) => new FrameContract(rt).advance(seq)),
  logits,
  noise: req.noise.map(({ seed, frames, per }) => Array.from(codecNoise(codecRng(seed), frames, per))),
  noiseSplit: req.noise.map(({ seed, frames, per }) => {
    const rng = codecRng(seed);  // frame by frame from one generator: the same values
    return Array.from({ length: frames }, () => Array.from(codecNoise(rng, 1, per))).flat();
  }),
  prompt: req.prompt.turns.map((turns) => answer(() => prompt.build(turns).ids)),
}));
