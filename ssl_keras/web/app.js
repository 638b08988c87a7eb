// Breed guessing in the page: a photo in, the top breeds with probability bars out.
//
// Loads the TF.js graph model in model/ (written by `python -m ssl_keras.run export`),
// whose model.json carries the class names. The model takes float pixels 0..255 of
// any size and resizes them itself, so the page only decodes the photo.
// Query options: ?backend=cpu|webgl picks the TF.js backend (default: TF.js' choice).
//
// Contract for tests: results go into #predictions, one child per breed, best first,
// each with data-breed and data-probability; document.body.dataset.state is
// loading | ready | predicting | done | error.
'use strict';

const MODEL_URL = 'model/model.json';
const IMAGE_TYPES = 'a JPEG, PNG, GIF, WebP or BMP photo';

const el = (id) => document.getElementById(id);
const ui = {
  file: el('file'), dropzone: el('dropzone'), message: el('message'), status: el('status'),
  result: el('result'), preview: el('preview'), predictions: el('predictions'), timing: el('timing'),
  about: el('about'),
};

let model = null;
let classes = [];
let topK = 5;
let request = 0;

function setState(state) {
  document.body.dataset.state = state;
}

function showMessage(text) {
  ui.message.textContent = text;
  ui.message.hidden = false;
}

function clearMessage() {
  ui.message.hidden = true;
  ui.message.textContent = '';
}

function prettyName(name) {
  const words = name.replace(/[_-]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

async function loadModel() {
  setState('loading');
  if (location.protocol === 'file:') {
    throw new Error('This page must be served over HTTP, e.g. `python -m http.server -d export/web 8000`, '
      + 'then open http://127.0.0.1:8000/.');
  }
  const backend = new URLSearchParams(location.search).get('backend');
  if (backend && !(await tf.setBackend(backend))) {
    throw new Error(`TF.js backend "${backend}" is not available here. Expected cpu or webgl.`);
  }
  await tf.ready();
  model = await tf.loadGraphModel(MODEL_URL);
  const meta = model.metadata || {};
  classes = meta.classes || [];
  if (!classes.length) throw new Error(`${MODEL_URL} has no class names (userDefinedMetadata.classes).`);
  topK = Math.min(meta.top_k || 5, classes.length);
  const size = meta.image_size || 64;
  tf.tidy(() => { model.predict(tf.zeros([1, size, size, 3])); }); // warm-up: compile kernels once
  ui.about.textContent = `${classes.length} breeds: ${classes.map(prettyName).join(', ')}. `
    + `Model ${meta.model_name || ''} v${meta.version || '?'}, ${size}\u00d7${size} px, `
    + `TF.js ${tf.version.tfjs} on the ${tf.getBackend()} backend.`;
  ui.status.textContent = 'Ready: choose, drop or paste a photo.';
  setState('ready');
}

async function decode(file) {
  try {
    return await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    return null;
  }
}

function render(probabilities, ms) {
  const order = Array.from(probabilities.keys()).sort((a, b) => probabilities[b] - probabilities[a]);
  ui.predictions.replaceChildren(...order.slice(0, topK).map((i) => {
    const p = probabilities[i];
    const li = document.createElement('li');
    li.dataset.breed = classes[i];
    li.dataset.probability = String(p);
    const label = document.createElement('div');
    label.className = 'label';
    const name = document.createElement('span');
    name.textContent = prettyName(classes[i]);
    const percent = document.createElement('span');
    percent.textContent = `${(p * 100).toFixed(1)}%`;
    label.append(name, percent);
    const bar = document.createElement('div');
    bar.className = 'bar';
    const fill = document.createElement('span');
    fill.style.width = `${(p * 100).toFixed(2)}%`;
    bar.append(fill);
    li.append(label, bar);
    return li;
  }));
  ui.timing.textContent = `Prediction took ${ms.toFixed(1)} ms (${tf.getBackend()} backend).`;
}

async function classify(file) {
  const id = ++request;
  clearMessage();
  if (!model) {
    showMessage('The model is not loaded yet.');
    return;
  }
  if (file.type && !file.type.startsWith('image/')) {
    failNotImage(file, `it is ${file.type}`);
    return;
  }
  setState('predicting');
  ui.status.textContent = `Reading ${file.name || 'the pasted photo'}\u2026`;
  const bitmap = await decode(file);
  if (id !== request) return;
  if (!bitmap) {
    failNotImage(file, 'this browser cannot decode it');
    return;
  }
  const start = performance.now();
  const x = tf.tidy(() => tf.browser.fromPixels(bitmap).toFloat().expandDims(0)); // (1, H, W, 3)
  const out = model.predict(x);
  const probs = out.probabilities || out;
  const probabilities = await probs.data();
  const ms = performance.now() - start;
  tf.dispose([x, probs]);
  bitmap.close();
  if (id !== request) return;
  URL.revokeObjectURL(ui.preview.src);
  ui.preview.src = URL.createObjectURL(file);
  render(Array.from(probabilities), ms);
  ui.result.hidden = false;
  ui.status.textContent = file.name ? `Photo: ${file.name}` : 'Pasted photo';
  setState('done');
}

function failNotImage(file, why) {
  ui.result.hidden = true;
  ui.predictions.replaceChildren();
  ui.status.textContent = 'Ready: choose, drop or paste a photo.';
  showMessage(`\u201c${file.name || 'The pasted file'}\u201d is not an image (${why}). Choose ${IMAGE_TYPES}.`);
  setState('error');
}

function run(file) {
  classify(file).catch((e) => {
    showMessage(`Prediction failed: ${e.message}`);
    setState('error');
  });
}

ui.file.addEventListener('change', () => {
  if (ui.file.files.length) run(ui.file.files[0]);
});

ui.dropzone.addEventListener('dragover', (e) => {
  e.preventDefault();
  ui.dropzone.classList.add('over');
});
ui.dropzone.addEventListener('dragleave', () => ui.dropzone.classList.remove('over'));
ui.dropzone.addEventListener('drop', (e) => {
  e.preventDefault();
  ui.dropzone.classList.remove('over');
  if (e.dataTransfer.files.length) run(e.dataTransfer.files[0]);
});

document.addEventListener('paste', (e) => {
  const item = Array.from(e.clipboardData.items).find((i) => i.kind === 'file');
  if (item) {
    e.preventDefault();
    run(item.getAsFile());
  } else {
    showMessage(`The clipboard holds no file. Copy ${IMAGE_TYPES} and paste again.`);
  }
});

loadModel().catch((e) => {
  ui.status.textContent = '';
  showMessage(`Cannot load the model: ${e.message}`);
  setState('error');
});
