// narwhal's example worker in Node: an HTTP server on the socket narwhal passes down
// (server.listen({fd: 3})), or on $PORT when run alone. It answers with its pid,
// NARWHAL_WORKER_ID and NARWHAL_GENERATION, has /slow?ms=N for drain tests, and on SIGTERM
// finishes the requests in flight before it exits.
//
// BOOT_DELAY (such as 300ms or 2s) delays the start like a real app loading its code.
// NOTIFY=fd sends READY=1 over NARWHAL_NOTIFY_FD (Node has no unix datagram sockets); without
// it narwhal sees the server accepting and needs no message.
'use strict';
const http = require('http');
const fs = require('fs');

const hello = JSON.stringify({
  pid: process.pid,
  worker_id: process.env.NARWHAL_WORKER_ID || '',
  generation: process.env.NARWHAL_GENERATION || '',
  listen_pid: process.env.LISTEN_PID || '',
}) + '\n';

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/slow') {
    // Headers at once (a client then knows a worker holds the request), the body after ms.
    const ms = Number(url.searchParams.get('ms') || 0);
    res.writeHead(200);
    res.flushHeaders();
    setTimeout(() => res.end(`slept ${ms}ms in pid ${process.pid}\n`), ms);
    return;
  }
  res.setHeader('Content-Type', 'application/json');
  res.end(hello);
});

function listen() {
  const inherited = process.env.LISTEN_PID === String(process.pid) && Number(process.env.LISTEN_FDS) >= 1;
  const target = inherited ? { fd: 3 } : { port: Number(process.env.PORT || 8080), reusePort: true };
  server.listen(target, () => {
    if (process.env.NOTIFY === 'fd') {
      fs.writeSync(Number(process.env.NARWHAL_NOTIFY_FD), 'READY=1\n');
    }
  });
}

process.on('SIGTERM', () => server.close(() => process.exit(0)));

function parseDelay(s) {
  if (!s) return 0;
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(s);
  if (!m) return 0;
  return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
}
setTimeout(listen, parseDelay(process.env.BOOT_DELAY));
