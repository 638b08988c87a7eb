// Runs a TF.js graph model (exported by ssl_keras.export) in Node on the pure-JS CPU backend.
//
//   node predict_node.mjs MODEL_DIR PIXELS.bin SHAPES.json OUT.json
//
// PIXELS.bin holds float32 RGB pixels (0..255), one photo after another, whose
// [height, width] are listed in SHAPES.json. OUT.json gets
// {"probabilities": [[...], ...], "ms_per_image": n, "backend": "cpu"}.
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';

async function loadModel(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const specs = [];
  const buffers = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  return tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, weightSpecs: specs, weightData, format: json.format,
    generatedBy: json.generatedBy, convertedBy: json.convertedBy, signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
  }));
}

async function main() {
  const [modelDir, pixelsPath, shapesPath, outPath] = process.argv.slice(2);
  if (!outPath) {
    console.error('usage: node predict_node.mjs MODEL_DIR PIXELS.bin SHAPES.json OUT.json');
    process.exit(2);
  }
  await tf.setBackend('cpu');
  const model = await loadModel(modelDir);
  const raw = fs.readFileSync(pixelsPath);
  const pixels = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const shapes = JSON.parse(fs.readFileSync(shapesPath, 'utf8'));
  const probabilities = [];
  let offset = 0;
  let ms = 0;
  for (const [h, w] of shapes) {
    const n = h * w * 3;
    const x = tf.tensor4d(pixels.subarray(offset, offset + n), [1, h, w, 3]);
    offset += n;
    const start = performance.now();
    const out = model.predict(x);
    const p = await out.probabilities.data();
    ms += performance.now() - start;
    probabilities.push(Array.from(p));
    tf.dispose([x, ...Object.values(out)]);
  }
  fs.writeFileSync(outPath, JSON.stringify({
    probabilities, ms_per_image: ms / Math.max(1, shapes.length), backend: tf.getBackend(),
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
