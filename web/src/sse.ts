/**
 * Server-Sent Events, as the OpenAI-compatible routes send them (`data: <json>\n\n`, then
 * `data: [DONE]`): text in (any chunking), `data` payloads out. Pure: the node tests import it too.
 */
export class SseParser {
  private buf = '';

  /** Feeds decoded text; returns the data payloads of the events it completed. */
  push(text: string): string[] {
    this.buf += text.replace(/\r\n?/g, '\n');
    const out: string[] = [];
    let end: number;
    while ((end = this.buf.indexOf('\n\n')) >= 0) {
      const block = this.buf.slice(0, end);
      this.buf = this.buf.slice(end + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(l.startsWith('data: ') ? 6 : 5));
      if (data.length > 0) out.push(data.join('\n'));
    }
    return out;
  }
}
