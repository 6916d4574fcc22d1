// Run the TF.js model of this bundle, standalone: Node.js and @tensorflow/tfjs (pure JS, CPU
// backend) are all it needs (`npm install` here installs the version modelport validated with).
//
//   node run.js --selftest                 replay the golden vectors; exit 1 if the outputs drifted
//   node run.js --inputs in.json -o out.json
//       named inputs in: {"x": {"shape": [1, 3], "dtype": "float32", "values": [...]}} (or, as in
//       golden.json, "data": base64 of the little-endian array); named outputs out, with "values"
//
// Inputs and outputs are named and laid out as the original (source) model's: this script applies
// the layout change recorded in modelport.json, as modelport did when it validated the model.
// Written by modelport; it needs nothing from modelport.
'use strict';

const quiet = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
console.warn = quiet;
console.info = quiet;

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const { DTYPES, fileHandler, describe } = require('./tfjs_model');

const HERE = __dirname;
const WIRE = { float32: 'float32', float64: 'float32', float16: 'float32', int64: 'int32', int32: 'int32',
  int16: 'int32', int8: 'int32', uint8: 'int32', bool: 'bool' };

function decode(entry) {
  if (entry.values !== undefined) {
    const dtype = entry.dtype || 'float32';
    return { values: DTYPES[dtype].from(entry.values.flat(Infinity)), shape: entry.shape, dtype };
  }
  const bytes = Buffer.from(entry.data, 'base64');
  const copy = new Uint8Array(bytes).buffer;  // aligned for the typed array
  return { values: new DTYPES[entry.dtype](copy), shape: entry.shape, dtype: entry.dtype };
}

function inverse(perm) {
  const out = new Array(perm.length);
  perm.forEach((p, i) => { out[p] = i; });
  return out;
}

async function predict(model, io, manifest, inputs) {
  const nodes = Object.fromEntries(io.inputs.map((t) => [t.name, t.node]));
  const feed = {};
  for (const spec of manifest.inputs) {
    const given = inputs[spec.name];
    let tensor = tf.tensor(given.values, given.shape, WIRE[given.dtype] || 'float32');
    if (spec.perm) tensor = tf.transpose(tensor, spec.perm);
    if (spec.scalar) tensor = tf.reshape(tensor, [1]); // the model holds the source's scalar as one element
    feed[nodes[spec.model_name] || spec.model_name] = tensor;
  }
  const wanted = manifest.outputs.map((spec) => io.outputs.find((o) => o.name === spec.model_name));
  let result = await model.executeAsync(feed, wanted.map((o) => (o ? o.node : undefined)));
  if (!Array.isArray(result)) result = [result];
  const outputs = {};
  manifest.outputs.forEach((spec, i) => {
    let tensor = result[i];
    if (spec.perm) tensor = tf.transpose(tensor, inverse(spec.perm));
    if (spec.scalar && tensor.size === 1) tensor = tf.reshape(tensor, []);
    outputs[spec.name] = { values: tensor.dataSync(), shape: tensor.shape };
  });
  return outputs;
}

async function open() {
  const manifest = JSON.parse(fs.readFileSync(path.join(HERE, 'modelport.json'), 'utf8'));
  await tf.setBackend('cpu');
  await tf.ready();
  const model = await tf.loadGraphModel(fileHandler(path.join(HERE, manifest.model)));
  return { manifest, model, io: describe(model) };
}

async function runInputs(inputPath, outputPath) {
  const { manifest, model, io } = await open();
  const given = JSON.parse(fs.readFileSync(inputPath, 'utf8'));
  const missing = manifest.inputs.map((spec) => spec.name).filter((name) => !(name in given));
  if (missing.length) {
    quiet(`error: ${inputPath} lacks input(s) ${missing.join(', ')}; the model's inputs are `
      + `${manifest.inputs.map((spec) => `${spec.name} ${JSON.stringify(spec.shape)}`).join(', ')}`);
    return 2;
  }
  const inputs = Object.fromEntries(Object.entries(given).map(([k, v]) => [k, decode(v)]));
  const outputs = await predict(model, io, manifest, inputs);
  const written = Object.fromEntries(Object.entries(outputs).map(([name, out]) => [name,
    { shape: out.shape, dtype: 'float32', values: Array.from(out.values, Number) }]));
  const text = JSON.stringify(written);
  if (outputPath) fs.writeFileSync(outputPath, text); else process.stdout.write(`${text}\n`);
  return 0;
}

async function selftest() {
  const { manifest, model, io } = await open();
  const golden = JSON.parse(fs.readFileSync(path.join(HERE, manifest.golden.json), 'utf8'));
  const tolerance = manifest.golden.tolerance;
  let worst = 0;
  for (let index = 0; index < golden.length; index += 1) {
    const inputs = Object.fromEntries(Object.entries(golden[index].inputs).map(([k, v]) => [k, decode(v)]));
    const outputs = await predict(model, io, manifest, inputs);
    for (const spec of manifest.outputs) {
      const expected = decode(golden[index].outputs[spec.name]).values;
      const got = outputs[spec.name].values;
      let ok = expected.length === got.length;
      let maxAbs = 0; let dot = 0; let ne = 0; let ng = 0;
      for (let i = 0; ok && i < expected.length; i += 1) {
        const e = Number(expected[i]); const g = Number(got[i]); const d = Math.abs(e - g);
        maxAbs = Math.max(maxAbs, d);
        if (d > tolerance.atol + tolerance.rtol * Math.abs(e)) ok = false;
        dot += e * g; ne += e * e; ng += g * g;
      }
      const cosine = ne === 0 && ng === 0 ? 1 : dot / Math.sqrt(ne * ng || 1);
      ok = ok && cosine >= (tolerance.min_cosine || 0);
      process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} sample ${index} output ${spec.name}: max abs diff `
        + `${maxAbs.toPrecision(3)}, cosine ${cosine.toFixed(6)}\n`);
      if (!ok) worst = 1;
    }
  }
  process.stdout.write(worst ? 'selftest FAILED: the model\'s outputs drifted from the golden vectors\n'
    : 'selftest passed\n');
  return worst;
}

function option(name) {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

const fail = (error) => { quiet(`error: ${error && error.message ? error.message : error}`); process.exit(2); };
if (process.argv.includes('--selftest')) {
  selftest().then((code) => process.exit(code), fail);
} else if (option('--inputs')) {
  runInputs(option('--inputs'), option('-o') || option('--output')).then((code) => process.exit(code), fail);
} else {
  quiet('usage: node run.js --selftest | node run.js --inputs in.json [-o out.json]');
  process.exit(2);
}
