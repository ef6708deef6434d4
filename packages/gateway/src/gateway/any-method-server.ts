// A gRPC endpoint on node:http2 that accepts every method path and hands
// each call, as raw message bytes, to a grpc-js channel chosen per call.
// grpc-js's Server serves registered paths only and has no catch-all, and a
// gateway must carry methods it has never seen; gRPC's HTTP/2 mapping is
// small (length-prefixed messages, headers, trailers), so we speak it here.

import type http2 from 'node:http2';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  type ChannelInterface,
  type Client,
  type ClientDuplexStream,
  Metadata,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import {
  asClient,
  decodeTimeout,
  encodeGrpcMessage,
  isTransportHeader,
  MessageFramingError,
  MessageReader,
  onFinalStatus,
  rawBytes,
  relay,
} from 'grpctunnel/internal';

/** Where a call goes: a channel, or the status to refuse it with. */
export type Route =
  | { channel: ChannelInterface; metadata?: Metadata /** Passed to onFinish (e.g. the agent). */; label?: string }
  | { refuse: StatusObject };

/** The connection a call arrived on (its TLS socket under TLS, for client certificates). */
export interface CallConnection {
  readonly socket: Socket | TLSSocket | undefined;
  /** Aborted when the call's HTTP/2 stream closes (for routing that takes a while). */
  readonly signal: AbortSignal;
}

/** Options of {@link serveAnyMethod}. */
export interface AnyMethodOptions {
  /**
   * Picks the channel for a call from its path and request metadata. It may
   * answer later (a promise): the request's bytes wait, unread, under HTTP/2
   * flow control; a caller that goes away meanwhile is counted as cancelled.
   * A rejected promise refuses the call with INTERNAL (the reason is not sent).
   */
  route(path: string, metadata: Metadata, connection: CallConnection): Route | Promise<Route>;
  /**
   * Called exactly once per call with its outcome and duration (for logs and
   * metrics). `answered` says whether the upstream service responded (sent
   * headers or a message, or ended OK), as opposed to a call refused, failed
   * on the way or cancelled before any answer.
   */
  onFinish?(
    path: string,
    status: StatusObject,
    ms: number,
    bytesIn: number,
    bytesOut: number,
    label?: string,
    answered?: boolean,
  ): void;
  /** Largest request message accepted, in bytes. Default 4 MiB. */
  maxMessageSize?: number;
}

/** What a non-gRPC HTTP/2 request (a browser, curl) gets: a note for the person. */
export const NOT_GRPC_TEXT =
  'This is a gRPC endpoint: call it with a gRPC client over HTTP/2 (content-type application/grpc).\n';

function status(code: Status, details: string): StatusObject {
  return { code, details, metadata: new Metadata() };
}

const clients = new WeakMap<ChannelInterface, Client>();
function clientFor(channel: ChannelInterface): Client {
  let client = clients.get(channel);
  if (!client) {
    client = asClient(channel);
    clients.set(channel, client);
  }
  return client;
}

/**
 * Answers every gRPC call on `server` (an `http2.createServer()` or
 * `createSecureServer()` server) by forwarding it to the channel `route`
 * picks.
 */
export function serveAnyMethod(server: http2.Http2Server | http2.Http2SecureServer, options: AnyMethodOptions): void {
  const limit = options.maxMessageSize ?? 4 * 1024 * 1024;
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    handleCall(stream, headers, options, limit);
  });
}

function handleCall(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, options: AnyMethodOptions, limit: number) {
  const started = Date.now();
  const path = String(headers[':path'] ?? '');
  let bytesIn = 0;
  let bytesOut = 0;
  let headersSent = false;
  let done = false;
  let label: string | undefined;
  stream.on('error', () => {});

  const finish = (result: StatusObject) => {
    if (done) return;
    done = true;
    const answered = headersSent || result.code === Status.OK;
    options.onFinish?.(path, result, Date.now() - started, bytesIn, bytesOut, label, answered);
    if (stream.destroyed || stream.closed) return;
    const trailers: http2.OutgoingHttpHeaders = {
      ...result.metadata.toHttp2Headers(),
      'grpc-status': String(result.code),
      'grpc-message': encodeGrpcMessage(result.details),
    };
    if (!headersSent) {
      // Trailers-only response: status in the one and only HEADERS frame.
      headersSent = true;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true });
      return;
    }
    stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    stream.end();
  };

  if (headers[':method'] !== 'POST' || !String(headers['content-type'] ?? '').startsWith('application/grpc')) {
    done = true;
    stream.respond({ ':status': 415, 'content-type': 'text/plain; charset=utf-8' });
    stream.end(NOT_GRPC_TEXT);
    return;
  }
  const encoding = headers['grpc-encoding'];
  if (encoding !== undefined && encoding !== 'identity') {
    finish(status(Status.UNIMPLEMENTED, `message encoding "${encoding}" is not supported by this gateway`));
    return;
  }
  let metadata: Metadata;
  try {
    const copy: IncomingHttpHeaders = { ...headers };
    // One hop's headers stay behind, as they do at a tunnel's edge (one deny-list for both).
    for (const key of Object.keys(copy)) if (key.startsWith(':') || isTransportHeader(key)) delete copy[key];
    metadata = Metadata.fromHttp2Headers(copy);
  } catch {
    finish(status(Status.INTERNAL, 'malformed request metadata'));
    return;
  }
  const timeout = headers['grpc-timeout'];
  const ms = typeof timeout === 'string' ? decodeTimeout(timeout) : undefined;
  // The caller's deadline runs from when the call arrived, however long routing takes.
  const deadline = ms === undefined ? undefined : started + ms;
  const refuse = (result: StatusObject) => {
    finish(result);
    stream.resume();
  };
  let route: Route | Promise<Route>;
  try {
    let aborter: AbortController | undefined;
    route = options.route(path, metadata, {
      socket: stream.session?.socket as Socket | TLSSocket | undefined,
      // Made only when asked for: most routes answer at once.
      get signal() {
        if (!aborter) {
          const made = new AbortController();
          aborter = made;
          if (stream.closed) made.abort();
          else stream.once('close', () => made.abort());
        }
        return aborter.signal;
      },
    });
  } catch {
    refuse(status(Status.INTERNAL, 'the gateway failed to route the call'));
    return;
  }
  if (!(route instanceof Promise)) {
    guardedForward(route);
    return;
  }
  const gone = () => finish(status(Status.CANCELLED, 'the caller cancelled'));
  stream.once('close', gone);
  route.then(
    (chosen) => {
      stream.off('close', gone);
      if (!done) guardedForward(chosen);
    },
    () => {
      stream.off('close', gone);
      refuse(status(Status.INTERNAL, 'the gateway failed to route the call'));
    },
  );

  // A route that cannot be followed fails this call only, never the server.
  function guardedForward(route: Route): void {
    try {
      forward(route);
    } catch {
      refuse(status(Status.INTERNAL, 'the gateway failed to route the call'));
    }
  }

  function forward(route: Route): void {
    if (typeof route !== 'object' || route === null) throw new TypeError('not a route');
    if ('refuse' in route) {
      refuse(route.refuse);
      return;
    }
    label = route.label;
    const upstream: ClientDuplexStream<Buffer, Buffer> = clientFor(route.channel).makeBidiStreamRequest(
      path,
      rawBytes,
      rawBytes,
      route.metadata ?? metadata,
      deadline === undefined ? {} : { deadline },
    );
    relayCall(upstream);
  }

  function relayCall(upstream: ClientDuplexStream<Buffer, Buffer>): void {
    const sendHeaders = (md: Metadata) => {
      if (headersSent || stream.destroyed) return;
      headersSent = true;
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', ...md.toHttp2Headers() },
        { waitForTrailers: true },
      );
    };
    upstream.on('metadata', sendHeaders);
    upstream.on('data', (message: Buffer) => {
      sendHeaders(new Metadata());
      const prefix = Buffer.allocUnsafe(5);
      prefix[0] = 0;
      prefix.writeUInt32BE(message.length, 1);
      bytesOut += message.length;
      stream.write(prefix);
      relay(message, stream, upstream);
    });
    onFinalStatus(upstream, finish);

    // The library's reader of length-prefixed messages: one framing rule for
    // its own tunnel RPCs and this port.
    const reader = new MessageReader(limit);
    let refused = false;
    stream.on('data', (chunk: Buffer) => {
      if (refused) return;
      let messages: Buffer[];
      try {
        messages = reader.push(chunk);
      } catch (err) {
        if (!(err instanceof MessageFramingError)) throw err;
        refused = true;
        // Report first: cancelling may deliver the upstream's CANCELLED at once.
        finish(
          err.kind === 'compressed'
            ? status(Status.UNIMPLEMENTED, 'compressed messages are not supported by this gateway')
            : status(Status.RESOURCE_EXHAUSTED, err.message),
        );
        upstream.cancel();
        return;
      }
      for (const message of messages) {
        bytesIn += message.length;
        relay(message, upstream, stream);
      }
    });
    stream.on('end', () => {
      if (refused) return;
      if (reader.pending) {
        finish(status(Status.INTERNAL, 'the request ended in the middle of a message'));
        upstream.cancel();
        return;
      }
      upstream.end();
    });
    // The caller went away (cancel, deadline on its side, or a lost connection).
    // The call is counted here, once, before the upstream's own CANCELLED
    // (which may arrive during cancel()) finds it finished.
    stream.on('close', () => {
      if (done) return;
      finish(status(Status.CANCELLED, 'the caller cancelled'));
      upstream.cancel();
    });
  }
}
