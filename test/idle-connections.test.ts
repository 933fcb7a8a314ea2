/**
 * closeOnlyIdleConnections: a drain closes keep-alive connections with nothing in flight, but
 * not one whose ended response still waits for a slow client (Node 20's own
 * closeIdleConnections cut such a response's end off).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { closeOnlyIdleConnections } from '../src/http/idle-connections.js';

const BIG = 16 * 1024 * 1024; // more than loopback socket buffers absorb for a client that does not read

test('an ended but unflushed response is not idle; a kept-alive connection with nothing in flight is', async () => {
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url === '/big') { res.end(Buffer.alloc(BIG, 97)); return; }
    res.end('small');
  });
  closeOnlyIdleConnections(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    // A kept-alive connection, its one request answered: idle.
    let idleSocket!: import('node:net').Socket;
    const keptAlive = await new Promise<http.IncomingMessage>((resolve) => {
      http.get({ port, host: '127.0.0.1', path: '/small', agent }, resolve).once('socket', (s) => { idleSocket = s; });
    });
    keptAlive.resume();
    await new Promise((r) => keptAlive.once('end', r));
    // A slow client: the response has ended on the server, most of it still unsent.
    const slow = await new Promise<http.IncomingMessage>((resolve) => http.get({ port, host: '127.0.0.1', path: '/big', agent: false }, resolve));
    slow.pause();
    await new Promise((r) => setTimeout(r, 200));
    const idleClosed = new Promise((r) => idleSocket.once('close', r));
    server.closeIdleConnections();
    await idleClosed; // the idle one is closed (else this hangs and the test times out)
    let got = 0;
    slow.on('data', (c: Buffer) => { got += c.length; });
    slow.resume();
    await new Promise((r) => { slow.once('end', r); slow.once('close', r); });
    assert.equal(got, BIG, 'the slow client got the whole response');
    assert.ok(slow.complete);
  } finally {
    agent.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
