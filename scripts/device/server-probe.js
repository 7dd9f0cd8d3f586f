// Preloaded into the API server by `run.sh layouts` when BENCH_SERVER_PROBE=1
// (NODE_OPTIONS=--require): times each POST /v1/embeddings inside the server, from the request event
// to the handler's res.end() call and to the response's 'finish', and prints the medians of the last
// 200 requests every 100 requests to stderr. Comparing them with the client's latency and with the
// server's stage headers tells where a short query's time outside the engine goes. Diagnostics only.
'use strict';
const http = require('node:http');
const { performance } = require('node:perf_hooks');

const samples = { bodyEnd: [], handler: [], finish: [] };
const median = (values) => {
  const sorted = values.slice(-200).sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)].toFixed(2) : '-';
};
const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, req, res) {
  if (event === 'request' && req.method === 'POST' && req.url === '/v1/embeddings') {
    const started = performance.now();
    req.once('end', () => samples.bodyEnd.push(performance.now() - started));
    const end = res.end;
    res.end = function (...args) {
      samples.handler.push(performance.now() - started);
      return end.apply(this, args);
    };
    res.once('finish', () => {
      samples.finish.push(performance.now() - started);
      if (samples.finish.length % 100 === 0) {
        process.stderr.write(
          `server-probe n=${samples.finish.length} p50 ms: body read ${median(samples.bodyEnd)}, ` +
            `handler done (res.end) ${median(samples.handler)}, response finished ${median(samples.finish)}\n`,
        );
      }
    });
  }
  return emit.apply(this, arguments);
};
