// Loading a TF.js graph model from disk and naming its inputs and outputs: shared by modelport's
// runner (runner.js) and the standalone runner of a bundle (`modelport package --target tfjs`).
'use strict';

const fs = require('fs');
const path = require('path');

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
  // Where the signature is keyed by node names ("Identity:0"), for some outputs or all (seen:
  // "output_0", "Identity_1:0", "Identity_2:0"), the converter's structuredOutputKeys give the
  // SavedModel's output names in the order of the Identity nodes that produce them.
  const meta = (model.artifacts && model.artifacts.userDefinedMetadata) || {};
  const keys = meta.structuredOutputKeys;
  const identity = /^Identity(?:_(\d+))?(?::0)?$/;
  if (Array.isArray(keys) && keys.length === outputs.length && outputs.every((o) => identity.test(o.node))) {
    const order = (node) => Number(node.match(identity)[1] || 0);
    outputs.sort((a, b) => order(a.node) - order(b.node));
    outputs.forEach((o, i) => { o.name = keys[i]; });
  }
  return { inputs: side(signature.inputs, model.inputs), outputs };
}

module.exports = { DTYPES, fileHandler, describe };
