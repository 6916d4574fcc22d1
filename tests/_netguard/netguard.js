// Node's half of the test suite's network guard (netguard.py is Python's): loaded into every Node
// process the tests start through NODE_OPTIONS=--require (tests/conftest.py). A connection or name
// lookup that leaves this machine fails, and is logged to MODELPORT_TEST_NET_LOG so the test that
// caused it fails.
'use strict';

const dns = require('dns');
const fs = require('fs');
const net = require('net');

const LOCAL = new Set([undefined, null, '', 'localhost', '127.0.0.1', '::1', '0.0.0.0', '::']);

function isLocal(host) {
  const name = String(host === undefined || host === null ? '' : host).replace(/^\[|\]$/g, '');
  return LOCAL.has(name) || /^127\./.test(name) || /^::ffff:127\./.test(name);
}

function blocked(what) {
  const log = process.env.MODELPORT_TEST_NET_LOG;
  if (log) fs.appendFileSync(log, `${process.pid} node ${what}\n`);
  const err = new Error(`network access blocked by the test suite: ${what}`);
  err.code = 'ENETUNREACH';
  return err;
}

const realConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function connect(...args) {
  // connect(options[, cb]), connect(port[, host][, cb]), connect(path[, cb]); net.connect passes
  // its normalized [options, cb] array.
  // A refused connection fails as a network error would: 'error' on the socket.
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  let where;
  if (first && typeof first === 'object') {
    if (!first.path && !isLocal(first.host)) where = `${first.host}:${first.port}`;
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    const host = typeof args[1] === 'string' ? args[1] : undefined;
    if (!isLocal(host)) where = `${host}:${first}`;
  }
  if (where === undefined) return realConnect.apply(this, args);
  const err = blocked(`connect ${where}`);
  process.nextTick(() => this.destroy(err));
  return this;
};

for (const name of ['lookup', 'resolve', 'resolve4', 'resolve6']) {
  const real = dns[name];
  dns[name] = function guarded(host, ...rest) {
    if (isLocal(host)) return real.call(this, host, ...rest);
    const err = blocked(`resolve ${host}`);
    const callback = rest.reverse().find((a) => typeof a === 'function');
    if (!callback) throw err;
    process.nextTick(() => callback(err));
    return undefined;
  };
  const realPromise = dns.promises[name];
  dns.promises[name] = function guarded(host, ...rest) {
    return isLocal(host) ? realPromise.call(this, host, ...rest) : Promise.reject(blocked(`resolve ${host}`));
  };
}

if (typeof globalThis.fetch === 'function') {
  const realFetch = globalThis.fetch;
  globalThis.fetch = function fetch(resource, ...rest) {
    const url = String(resource && resource.url ? resource.url : resource);
    let host;
    try {
      host = new URL(url).hostname;
    } catch (err) {
      host = undefined;  // a relative URL: not a network address
    }
    if (host !== undefined && !url.startsWith('file:') && !url.startsWith('data:') && !isLocal(host)) {
      return Promise.reject(blocked(`fetch ${url}`));
    }
    return realFetch.call(this, resource, ...rest);
  };
}
