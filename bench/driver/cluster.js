// The node-cluster runner people write when they do not use a process manager: the primary
// forks WORKERS copies of the app (which listens on PORT; the primary hands out connections),
// restarts a worker that dies, and on SIGHUP replaces the workers one by one, each new one
// listening before the old one is told to finish (worker.disconnect()).
'use strict';
const cluster = require('cluster');
const path = require('path');

cluster.setupPrimary({ exec: path.resolve(process.argv[2]) });
const count = Number(process.env.WORKERS || 4);
let rolling = false;

function fork() {
  const w = cluster.fork();
  w.on('exit', (code, signal) => {
    if (!w.exitedAfterDisconnect && !rolling) setTimeout(fork, 100); // crashed: replace it
  });
  return w;
}

async function roll() {
  if (rolling) return;
  rolling = true;
  for (const old of Object.values(cluster.workers)) {
    const next = fork();
    const listening = await new Promise((resolve) => {
      next.once('listening', () => resolve(true));
      next.once('exit', () => resolve(false));
    });
    if (!listening) continue; // the new code died: keep the old worker, try the next slot
    old.disconnect();
  }
  rolling = false;
}

for (let i = 0; i < count; i++) fork();
process.on('SIGHUP', roll);
process.on('SIGTERM', () => {
  for (const w of Object.values(cluster.workers)) w.disconnect();
  setTimeout(() => process.exit(0), 5000).unref();
});
