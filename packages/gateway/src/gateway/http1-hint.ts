// A person who opens a gRPC port in a browser or with curl speaks HTTP/1.1,
// and node:http2 answers that with an HTTP/2 SETTINGS frame (garbage to
// them) or by closing the connection. These helpers answer such requests
// with a short plain-text note instead. Node's `allowHTTP1` works on TLS
// servers only (it relies on ALPN), so plaintext connections are told apart
// by their first bytes: every HTTP/2 connection starts with the client
// preface "PRI * HTTP/2.0".
import type http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** The HTTP/1.1 response carrying `text`; the connection closes after it. */
function http1Response(text: string): string {
  const body = Buffer.from(text, 'utf8');
  return (
    'HTTP/1.1 426 Upgrade Required\r\n' +
    'content-type: text/plain; charset=utf-8\r\n' +
    `content-length: ${body.length}\r\n` +
    'connection: close\r\n\r\n' +
    text
  );
}

function answer(socket: Duplex, text: string): void {
  socket.on('error', () => {});
  socket.end(http1Response(text));
}

/** What {@link sniffHttp1} returns: the listener to bind, and a way to drop connections still being sniffed. */
export interface SniffingListener {
  /** Listen on this instead of the HTTP/2 server. */
  readonly listener: net.Server;
  /** Destroys connections that have not sent their first bytes yet (for shutdown). */
  dropPending(): void;
}

/**
 * Puts a plaintext HTTP/2 server behind a TCP listener that hands HTTP/2
 * connections to it and answers anything else with `text` as an HTTP/1.1
 * response.
 */
export function sniffHttp1(
  server: http2.Http2Server,
  text: string,
  silence?: { timeoutMs: number; onSilent(socket: net.Socket): void },
): SniffingListener {
  const pending = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    pending.add(socket);
    // A connection that never sends its first bytes is closed after
    // `silence.timeoutMs` (it would otherwise sit here forever).
    const timer = silence
      ? setTimeout(() => {
          silence.onSilent(socket);
          socket.destroy();
        }, silence.timeoutMs)
      : undefined;
    socket.once('close', () => {
      clearTimeout(timer);
      pending.delete(socket);
    });
    socket.on('error', () => {});
    socket.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      pending.delete(socket);
      socket.pause();
      const n = Math.min(chunk.length, PREFACE.length);
      if (chunk.subarray(0, n).equals(PREFACE.subarray(0, n))) {
        // Give the bytes back: the HTTP/2 session reads them first.
        socket.unshift(chunk);
        server.emit('connection', socket);
      } else answer(socket, text);
    });
  });
  return {
    listener,
    dropPending() {
      for (const socket of pending) socket.destroy();
    },
  };
}

/**
 * Answers TLS clients that did not negotiate HTTP/2 (no ALPN, as Node's
 * https client and many scripts do) with `text` as an HTTP/1.1 response,
 * instead of dropping the connection.
 */
export function answerHttp1OverTls(server: http2.Http2SecureServer, text: string): void {
  server.on('unknownProtocol', (socket: Duplex) => {
    // Answer once the request has arrived (its content does not matter):
    // closing before a client has written can reset its connection.
    socket.on('error', () => {});
    socket.once('data', () => answer(socket, text));
  });
}
