// modelport's TF.js runner: loads a graph model (model.json + shards) from disk and runs it on
// tensors sent by Python over stdin/stdout as length-prefixed JSON headers plus raw bytes.
// Pure-JS CPU backend: nothing native is downloaded or needed.
'use strict';

// Everything TF.js prints must stay off stdout, which carries the protocol.
const toStderr = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
console.log = toStderr;
console.info = toStderr;
console.warn = toStderr;

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

const DTYPES = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };

function fileHandler(dir) {
  return {
    load: async () => {
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
      const specs = [];
      const buffers = [];
      for (const group of manifest.weightsManifest || []) {
        specs.push(...group.weights);
        for (const shard of group.paths) {
          // Checked in Python first (targets/tfjs.py); refused here too: never read outside the model.
          const where = path.resolve(dir, shard);
          if (!where.startsWith(path.resolve(dir) + path.sep)) throw new Error(`weight file ${shard} is outside the model folder`);
          buffers.push(fs.readFileSync(where));
        }
      }
      const joined = Buffer.concat(buffers);
      return {
        modelTopology: manifest.modelTopology,
        format: manifest.format,
        generatedBy: manifest.generatedBy,
        convertedBy: manifest.convertedBy,
        signature: manifest.signature,
        userDefinedMetadata: manifest.userDefinedMetadata,
        modelInitializer: manifest.modelInitializer,
        weightSpecs: specs,
        weightData: joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength),
      };
    },
  };
}

function describe(model) {
  // Signature keys are the names Python uses; node names are what execute() takes.
  const signature = (model.artifacts && model.artifacts.signature) || model.signature || {};
  const side = (entries, fallback) => {
    if (entries && Object.keys(entries).length) {
      return Object.entries(entries).map(([key, v]) => ({
        name: key.replace(/:0$/, ''),  // the converter sometimes keys the signature by tensor name
        node: v.name,
        dtype: (v.dtype || 'DT_FLOAT').replace('DT_', '').toLowerCase().replace(/^float$/, 'float32')
          .replace(/^int64$/, 'int32'),
        shape: ((v.tensorShape || {}).dim || []).map((d) => (Number(d.size) >= 0 ? Number(d.size) : -1)),
      }));
    }
    return fallback.map((t) => ({ name: t.name, node: t.name, dtype: t.dtype, shape: t.shape || [] }));
  };
  const outputs = side(signature.outputs, model.outputs);
  // Where the signature is keyed by node names ("Identity:0"), the converter's
  // structuredOutputKeys give the SavedModel's output names, in the same order.
  const meta = (model.artifacts && model.artifacts.userDefinedMetadata) || {};
  const keys = meta.structuredOutputKeys;
  if (Array.isArray(keys) && keys.length === outputs.length
      && outputs.every((o) => /^Identity(_\d+)?$/.test(o.name))) {
    const order = (name) => Number((name.match(/_(\d+)$/) || [0, 0])[1]);
    outputs.sort((a, b) => order(a.name) - order(b.name));
    outputs.forEach((o, i) => { o.name = keys[i]; });
  }
  return { inputs: side(signature.inputs, model.inputs), outputs };
}

function send(header, buffers = []) {
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const size = Buffer.alloc(4);
  size.writeUInt32LE(head.length, 0);
  process.stdout.write(Buffer.concat([size, head, ...buffers]));
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  const model = await tf.loadGraphModel(fileHandler(process.argv[2]));
  const io = describe(model);
  const byName = (list) => Object.fromEntries(list.map((t) => [t.name, t]));
  const inputs = byName(io.inputs);
  send({ ok: true, inputs: io.inputs, outputs: io.outputs, backend: tf.getBackend(), version: tf.version.tfjs });

  const run = async (header, body) => {
    const feed = {};
    let offset = 0;
    for (const t of header.inputs) {
      const Type = DTYPES[t.dtype];
      const bytes = body.subarray(offset, offset + t.nbytes);
      offset += t.nbytes;
      const copy = new Uint8Array(bytes).buffer;  // aligned copy for the typed array
      const values = new Type(copy);
      feed[(inputs[t.name] || { node: t.name }).node] = tf.tensor(values, t.shape, t.dtype);
    }
    const nodes = io.outputs.map((o) => o.node);
    let result = await model.executeAsync(feed, nodes);
    if (!Array.isArray(result)) result = [result];
    Object.values(feed).forEach((t) => t.dispose());
    return result;
  };

  let pending = Buffer.alloc(0);
  let busy = Promise.resolve();
  process.stdin.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 8) {
      const headSize = pending.readUInt32LE(0);
      const bodySize = pending.readUInt32LE(4);
      if (pending.length < 8 + headSize + bodySize) break;
      const header = JSON.parse(pending.subarray(8, 8 + headSize).toString('utf8'));
      const body = pending.subarray(8 + headSize, 8 + headSize + bodySize);
      pending = pending.subarray(8 + headSize + bodySize);
      busy = busy.then(() => handle(header, Buffer.from(body))).catch((err) => send({ ok: false, error: String(err && err.message || err) }));
    }
  });
  process.stdin.on('end', () => busy.then(() => process.exit(0)));

  async function handle(header, body) {
    if (header.cmd === 'run') {
      const outputs = await run(header, body);
      const meta = [];
      const buffers = [];
      for (let i = 0; i < outputs.length; i += 1) {
        const data = await outputs[i].data();
        const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        meta.push({ name: io.outputs[i].name, dtype: outputs[i].dtype, shape: outputs[i].shape, nbytes: buf.length });
        buffers.push(buf);
        outputs[i].dispose();
      }
      send({ ok: true, outputs: meta }, buffers);
    } else if (header.cmd === 'time') {
      const times = [];
      for (let i = 0; i < header.warmup + header.runs; i += 1) {
        const start = process.hrtime.bigint();
        const outputs = await run(header, body);
        await Promise.all(outputs.map((t) => t.data()));
        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
        outputs.forEach((t) => t.dispose());
        if (i >= header.warmup) times.push(seconds);
      }
      send({ ok: true, times });
    } else {
      send({ ok: false, error: `unknown command ${header.cmd}` });
    }
  }
}

main().catch((err) => {
  send({ ok: false, error: String(err && err.message || err) });
  process.exit(1);
});
