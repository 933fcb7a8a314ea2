import type { Response } from 'express';

/**
 * A Server-Sent Events stream in OpenAI's format: `data: <json>\n\n` per chunk and a final
 * `data: [DONE]`. Headers are sent with the first chunk, so errors before it stay plain JSON.
 */
export class SseStream {
  private started = false;
  private ended = false;

  constructor(private readonly res: Response) {}

  get isStarted(): boolean { return this.started; }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.res.status(200);
    this.res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    this.res.setHeader('Cache-Control', 'no-cache');
    this.res.setHeader('X-Accel-Buffering', 'no'); // proxies: do not buffer the stream
    this.res.flushHeaders();
  }

  /** Sends one chunk; false when the socket's buffer is full (the client reads slower than we write). */
  send(chunk: unknown): boolean {
    if (this.ended) return false;
    this.start();
    return this.res.write(`data: ${JSON.stringify(chunk)}\n\n`);
  }

  /** Sends `[DONE]` and ends the response. */
  done(): void {
    if (this.ended) return;
    this.start();
    this.ended = true;
    this.res.end('data: [DONE]\n\n');
  }
}
