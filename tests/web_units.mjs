// The JS runtime's pure pieces on inputs from tests/test_web_units.py: a JSON request on stdin, each
// answer on stdout, so pytest compares them with the Python runtime's on the same inputs.
import { completeSentences, planUtterances, splitSentences } from '../web/src/runtime/chunking.js';
import { pcm16 } from '../web/src/runtime/audio.js';
import { NumpyRng } from '../web/src/runtime/sampling.js';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const req = JSON.parse(input);
const plan = ({ text, limit }) => {
  try { return planUtterances(text, (t) => [...t].length <= limit); } catch (e) { return { error: e.message, kind: e.name }; }
};
process.stdout.write(JSON.stringify({
  split: req.split.map(splitSentences),
  complete: req.complete.map(completeSentences),
  plan: req.plan.map(plan),
  pcm16: Array.from(pcm16(Float32Array.from(req.pcm16))),
  rng: req.rng.map(({ seed, n }) => Array.from(new NumpyRng(seed).fillFloat32(new Float32Array(n)))),
}));
