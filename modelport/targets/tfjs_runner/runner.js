// modelport's TF.js runner: loads a graph model (model.json + shards) from disk and runs it on
// tensors sent by Python over stdin/stdout as length-prefixed JSON headers plus raw bytes.
// Backend: WebAssembly (@tensorflow/tfjs-backend-wasm), its .wasm files read from the npm package's
// own folder (never fetched); a model that hits an op wasm has no kernel for (or whose wasm kernel
// refuses the case) is reloaded and run on the pure-JS CPU backend, and every answer names the
// backend that ran. One thread: in Node the
// package turns off its threaded build (its workers are blob: URLs, which Node cannot start).
'use strict';

// Everything TF.js prints must stay off stdout, which carries the protocol.
const toStderr = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
console.log = toStderr;
console.info = toStderr;
console.warn = toStderr;

const path = require('path');
const tf = require('@tensorflow/tfjs');

const { DTYPES, fileHandler, describe } = require('./tfjs_model');

const MISSING_KERNEL = /Kernel '([^']+)' not registered for backend 'wasm'/;
const REFUSED = /not yet supported|does not support|only supports/;

// Why wasm cannot run this model, or null: no kernel for an op, or a wasm kernel refusing a case
// it does not implement (thrown from the wasm package: int32 BatchMatMul, NCHW pooling...).
function wasmGap(err) {
  if (tf.getBackend() !== 'wasm') return null;
  const message = String((err && err.message) || err);
  const missing = MISSING_KERNEL.exec(message);
  if (missing) return `wasm lacks kernel ${missing[1]}`;
  const stack = String((err && err.stack) || '');
  if (REFUSED.test(message) && stack.includes(`${path.sep}tfjs-backend-wasm${path.sep}`)) {
    return `wasm lacks support: ${message.split('\n')[0].trim().slice(0, 160)}`;
  }
  return null;
}

// 'wasm', or 'cpu: <why wasm did not initialise>'.
async function chooseBackend() {
  let reason;
  const warnings = [];
  const { warn, error } = console;
  const keep = (print) => (...args) => { warnings.push(args.map(String).join(' ')); print(...args); };
  console.warn = keep(warn);
  console.error = keep(error);
  try {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      return 'wasm';
    }
    // Emscripten logs the cause as "Aborted(...)"; tfjs then "Initialization of backend wasm
    // failed" and its own advice about serving the .wasm file.
    const aborted = warnings.find((w) => w.startsWith('Aborted('));
    const failed = warnings.findIndex((w) => w.startsWith('Initialization of backend wasm failed'));
    reason = (aborted && aborted.slice(8, -1)) || (failed >= 0 && warnings[failed + 1]) || 'no message';
  } catch (err) {
    reason = String((err && err.message) || err);
  } finally {
    console.warn = warn;
    console.error = error;
  }
  await tf.setBackend('cpu');
  await tf.ready();
  return `cpu: wasm did not initialise: ${reason.split('\n')[0].slice(0, 160)}`;
}

function send(header, buffers = []) {
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const size = Buffer.alloc(4);
  size.writeUInt32LE(head.length, 0);
  process.stdout.write(Buffer.concat([size, head, ...buffers]));
}

async function main() {
  let backend = await chooseBackend();
  let model = await tf.loadGraphModel(fileHandler(process.argv[2]));
  const io = describe(model);
  const byName = (list) => Object.fromEntries(list.map((t) => [t.name, t]));
  const inputs = byName(io.inputs);
  send({ ok: true, inputs: io.inputs, outputs: io.outputs, backend, version: tf.version.tfjs });

  const execute = async (header, body, nodes = io.outputs.map((o) => o.node)) => {
    const feed = {};
    let offset = 0;
    let outputs = [];
    try {
      for (const t of header.inputs) {
        const Type = DTYPES[t.dtype];
        const bytes = body.subarray(offset, offset + t.nbytes);
        offset += t.nbytes;
        const copy = new Uint8Array(bytes).buffer;  // aligned copy for the typed array
        const values = new Type(copy);
        feed[(inputs[t.name] || { node: t.name }).node] = tf.tensor(values, t.shape, t.dtype);
      }
      const result = await model.executeAsync(feed, nodes);
      outputs = Array.isArray(result) ? result : [result];
      return outputs;
    } finally {
      // An output may be an input itself (a graph that passes it through): it lives on.
      Object.values(feed).filter((t) => !outputs.includes(t)).forEach((t) => t.dispose());
    }
  };
  // The same tensor may be two outputs (or an input): each is disposed once, after all are read.
  // An output that is a constant of the graph is the model's own weight tensor: it stays.
  const release = (outputs) => {
    const owned = new Set(Object.values(model.weights || {}).flat());
    [...new Set(outputs)].filter((t) => !owned.has(t)).forEach((t) => t.dispose());
  };

  // An op wasm cannot run: the whole model again on the CPU backend, from now on.
  const run = async (header, body, nodes) => {
    try {
      return await execute(header, body, nodes);
    } catch (err) {
      const gap = wasmGap(err);
      if (!gap) throw err;
      model.dispose();
      await tf.setBackend('cpu');
      await tf.ready();
      backend = `cpu: ${gap}`;
      model = await tf.loadGraphModel(fileHandler(process.argv[2]));
      return execute(header, body, nodes);
    }
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
      }
      release(outputs);
      send({ ok: true, outputs: meta, backend }, buffers);
    } else if (header.cmd === 'tap') {
      // Every op's (first) output, in the graph's order (`modelport debug`); values that are not
      // numbers are left out.
      const topology = (model.artifacts && model.artifacts.modelTopology) || {};
      const nodes = (topology.node || []).filter((n) => !['Const', 'Placeholder', 'NoOp'].includes(n.op));
      const outputs = await run(header, body, nodes.map((n) => n.name));
      const meta = [];
      const buffers = [];
      for (let i = 0; i < outputs.length; i += 1) {
        if (['float32', 'int32', 'bool'].includes(outputs[i].dtype)) {
          const data = await outputs[i].data();
          const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
          meta.push({ name: nodes[i].name, op: nodes[i].op, dtype: outputs[i].dtype, shape: outputs[i].shape,
                      nbytes: buf.length });
          buffers.push(buf);
        }
      }
      release(outputs);
      send({ ok: true, outputs: meta, backend }, buffers);
    } else if (header.cmd === 'time') {
      const times = [];
      for (let i = 0; i < header.warmup + header.runs; i += 1) {
        const start = process.hrtime.bigint();
        const outputs = await run(header, body);
        await Promise.all(outputs.map((t) => t.data()));
        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
        release(outputs);
        if (i >= header.warmup) times.push(seconds);
      }
      send({ ok: true, times, backend });
    } else {
      send({ ok: false, error: `unknown command ${header.cmd}` });
    }
  }
}

main().catch((err) => {
  send({ ok: false, error: String(err && err.message || err) });
  process.exit(1);
});
