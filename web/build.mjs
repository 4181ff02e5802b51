// dist/voxport-web.js: the library as one ES module for pages without a bundler and for module workers
// (which take no import map): src/ with its tokenizer and template engines inlined; onnxruntime is left
// out (the app passes its module, or its bundler resolves onnxruntime-web).
import { build } from 'esbuild';

await build({
  entryPoints: ['src/index.js'], outfile: 'dist/voxport-web.js', bundle: true, format: 'esm', platform: 'browser',
  target: 'es2022', external: ['onnxruntime-web', 'onnxruntime-web/*', 'onnxruntime-node', 'node:*'],
  sourcemap: true, legalComments: 'linked', logLevel: 'warning',
});
