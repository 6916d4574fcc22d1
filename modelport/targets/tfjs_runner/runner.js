// modelport's TF.js runner: loads a graph model (model.json + shards) from disk and runs it on
// tensors sent by Python over stdin/stdout as length-prefixed JSON headers plus raw bytes.
// Pure-JS CPU backend: nothing native is downloaded or needed.
'use strict';

// Everything TF.js prints must stay off stdout, which carries the protocol.
const toStderr = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
console.log = toStderr;
console.info = toStderr;
console.warn = toStderr;

const tf = require('@tensorflow/tfjs');

const { DTYPES, fileHandler, describe } = require('./tfjs_model');

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
