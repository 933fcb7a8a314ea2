import type http from 'node:http';
import type { Socket } from 'node:net';

/**
 * Makes `server.closeIdleConnections()` (which `server.close()` also calls) close only
 * connections that are really idle: no request in flight and nothing left to send.
 *
 * Node 20's own version counts a connection as idle as soon as its response has ended, even
 * while that response is still waiting in the socket's buffer for a slow client: a drain then
 * cut the end (a stream's last chunks and `[DONE]`) off every response not yet flushed. Call
 * after the server's `checkContinue` handler (if any) is installed: requests are counted from
 * `request` and `checkContinue`.
 */
export function closeOnlyIdleConnections(server: http.Server): void {
  const inFlight = new Map<Socket, number>();
  server.on('connection', (socket: Socket) => {
    inFlight.set(socket, 0);
    socket.once('close', () => inFlight.delete(socket));
  });
  const count = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    // 'close' comes after 'finish', which waits for the last bytes to reach the socket.
    res.once('close', () => { const n = inFlight.get(socket); if (n !== undefined) inFlight.set(socket, n - 1); });
  };
  server.on('request', count);
  if (server.listenerCount('checkContinue') > 0) server.on('checkContinue', count);
  server.closeIdleConnections = () => {
    for (const [socket, n] of inFlight) if (n <= 0 && socket.writableLength === 0) socket.destroy();
  };
}
