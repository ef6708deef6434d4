// Runs the protocol engines in memory, without sockets or grpc-js: a
// tunnel-client engine wired to a tunnel-server engine (frames pass through
// the protobuf codec, as on the wire), or one engine fed frames by hand.
// Used by the engines' state-machine tests and their property-based tests.
import { Code } from '#grpctunnel/engine/codes.js';
import type { ClientFrame, ServerFrame } from '#grpctunnel/engine/frames.js';
import { ReceiveWindows } from '#grpctunnel/engine/receive-window.js';
import { localStatus, type StreamStatus } from '#grpctunnel/engine/status.js';
import {
  type ClientStreamHandlers,
  TunnelClientEngine,
  type TunnelClientEngineOptions,
} from '#grpctunnel/engine/tunnel-client.js';
import {
  type StreamDecision,
  TunnelServerEngine,
  type TunnelServerEngineOptions,
  type TunnelServerStream,
} from '#grpctunnel/engine/tunnel-server.js';
import { ClientToServer, ServerToClient } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';

/** One turn of the event loop: lets the engines' batched window updates go out. */
export const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Encodes and decodes a frame, so that what an engine receives is what the wire would carry. */
export const wireC2S = (f: ClientFrame | ClientToServer): ClientToServer =>
  ClientToServer.decode(ClientToServer.encode(f as ClientToServer).finish());
/** Encodes and decodes a frame, so that what an engine receives is what the wire would carry. */
export const wireS2C = (f: ServerFrame | ServerToClient): ServerToClient =>
  ServerToClient.decode(ServerToClient.encode(f as ServerToClient).finish());

/** How a server-side stream ended, as the application saw it. */
export interface ServerStreamRecord {
  readonly stream: TunnelServerStream;
  /** Statuses the application closed it with (the invariant: one end in all). */
  readonly closedWith: StreamStatus[];
  /** Statuses onCancel reported. */
  readonly cancelledWith: StreamStatus[];
  /** Messages the application received. */
  readonly received: Buffer[];
  halfClosed: number;
}

/**
 * A small application on the tunnel-server engine, by method:
 * - `/test.Echo/Unary` (one request) and `/test.Echo/Bidi`: echo each
 *   message, reading the next only once the reply is written (honouring
 *   back-pressure), and close OK at half-close;
 * - `/test.Echo/Stall`: never reads;
 * - `/test.Echo/Fail`: closes with FAILED_PRECONDITION at once;
 * - anything else: UNIMPLEMENTED before any handler runs.
 */
export function echoApp(records: ServerStreamRecord[]): (stream: TunnelServerStream) => StreamDecision {
  return (stream) => {
    const record: ServerStreamRecord = { stream, closedWith: [], cancelledWith: [], received: [], halfClosed: 0 };
    const close = (status: StreamStatus, withHeaders = true) => {
      if (!stream.closed) record.closedWith.push(status);
      stream.close(status, withHeaders);
    };
    records.push(record);
    const onCancel = (status: StreamStatus) => record.cancelledWith.push(status);
    switch (stream.method) {
      case '/test.Echo/Unary':
      case '/test.Echo/Bidi':
        return {
          singleRequest: stream.method === '/test.Echo/Unary',
          handlers: {
            onMessage: (message) => {
              record.received.push(message);
              stream.sendMessage(message, (error) => {
                if (!error) stream.requestRead();
              });
            },
            onHalfClose: () => {
              record.halfClosed++;
              close(localStatus(Code.OK, ''));
            },
            onCancel,
          },
          start: () => stream.requestRead(),
        };
      case '/test.Echo/Stall':
        return {
          handlers: {
            onMessage: (message) => record.received.push(message),
            onHalfClose: () => record.halfClosed++,
            onCancel,
          },
        };
      case '/test.Echo/Fail':
        return {
          handlers: { onMessage: () => {}, onHalfClose: () => {}, onCancel },
          start: () => close(localStatus(Code.FAILED_PRECONDITION, 'asked to fail')),
        };
      default:
        return {
          handlers: { onMessage: () => {}, onHalfClose: () => {}, onCancel },
          start: () => close(localStatus(Code.UNIMPLEMENTED, `${stream.method.slice(1)} not implemented`), false),
        };
    }
  };
}

/** A tunnel-server engine fed by hand, with what it wrote and reported. */
export interface ServerUnderTest {
  readonly engine: TunnelServerEngine;
  /** Every frame it wrote, in order. */
  readonly written: ServerToClient[];
  readonly records: ServerStreamRecord[];
  readonly protocolErrors: StreamStatus[];
  /** Feeds one frame (through the codec). */
  feed(frame: ClientToServer): void;
}

/** Starts a tunnel-server engine running {@link echoApp}. */
export function serverUnderTest(options: Partial<TunnelServerEngineOptions> = {}): ServerUnderTest {
  const written: ServerToClient[] = [];
  const records: ServerStreamRecord[] = [];
  const protocolErrors: StreamStatus[] = [];
  const engine = new TunnelServerEngine({
    negotiated: true,
    onStream: echoApp(records),
    onProtocolError: (status) => protocolErrors.push(status),
    ...options,
    write: (frame) => {
      written.push(wireS2C(frame));
      return true;
    },
  });
  engine.start();
  return { engine, written, records, protocolErrors, feed: (frame) => engine.handleFrame(wireC2S(frame)) };
}

/** What a client-side stream reported. */
export interface ClientStreamRecord {
  readonly headers: number[];
  readonly messages: Buffer[];
  readonly closes: StreamStatus[];
}

/** Handlers that record what a client stream reports (and read every message). */
export function recordingHandlers(read: () => void = () => {}): {
  record: ClientStreamRecord;
  handlers: ClientStreamHandlers;
} {
  const record: ClientStreamRecord = { headers: [], messages: [], closes: [] };
  return {
    record,
    handlers: {
      onHeaders: () => record.headers.push(1),
      onMessage: (m) => {
        record.messages.push(m);
        read();
      },
      onClose: (s) => record.closes.push(s),
    },
  };
}

/** A tunnel-client engine connected to a tunnel-server engine in memory. */
export interface EnginePair {
  readonly client: TunnelClientEngine;
  readonly server: TunnelServerEngine;
  readonly records: ServerStreamRecord[];
  /** Frames each way, in the order they were delivered. */
  readonly toServer: ClientToServer[];
  readonly toClient: ServerToClient[];
  readonly protocolErrors: { client: StreamStatus[]; server: StreamStatus[] };
  /** Delivers frames both ways until nothing moves (window updates included). */
  settle(): Promise<void>;
  /** Makes one unary call on `/test.Echo/Unary` and waits for its end. */
  unary(request: Buffer): Promise<{ reply: Buffer[]; status: StreamStatus }>;
}

/** Connects a client engine to a server engine running {@link echoApp}. */
export function connectEngines(
  options: {
    negotiated?: boolean;
    client?: Partial<TunnelClientEngineOptions>;
    server?: Partial<TunnelServerEngineOptions>;
    windows?: ReceiveWindows;
  } = {},
): EnginePair {
  const negotiated = options.negotiated ?? true;
  const records: ServerStreamRecord[] = [];
  const toServer: ClientToServer[] = [];
  const toClient: ServerToClient[] = [];
  const pendingToServer: ClientToServer[] = [];
  const pendingToClient: ServerToClient[] = [];
  const protocolErrors = { client: [] as StreamStatus[], server: [] as StreamStatus[] };
  const client = new TunnelClientEngine({
    negotiated,
    onReady: () => {},
    onProtocolError: (status) => {
      protocolErrors.client.push(status);
      server.close(localStatus(Code.UNAVAILABLE, 'the tunnel ended'));
    },
    ...options.client,
    write: (frame) => pendingToServer.push(wireC2S(frame)) > 0,
  });
  const server = new TunnelServerEngine({
    negotiated,
    onStream: echoApp(records),
    onProtocolError: (status) => {
      protocolErrors.server.push(status);
      client.close(localStatus(Code.UNAVAILABLE, 'the tunnel ended'));
    },
    receiveWindows: options.windows,
    ...options.server,
    write: (frame) => pendingToClient.push(wireS2C(frame)) > 0,
  });
  server.start();
  client.start();
  const deliver = (): boolean => {
    let moved = false;
    for (;;) {
      const up = pendingToServer.shift();
      if (up) {
        toServer.push(up);
        server.handleFrame(up);
        moved = true;
        continue;
      }
      const down = pendingToClient.shift();
      if (down) {
        toClient.push(down);
        client.handleFrame(down);
        moved = true;
        continue;
      }
      return moved;
    }
  };
  const settle = async () => {
    // Two quiet turns in a row: no frame moved and no batched update went out.
    let quiet = 0;
    while (quiet < 2) {
      quiet = deliver() ? 0 : quiet + 1;
      await tick();
    }
  };
  deliver();
  return {
    client,
    server,
    records,
    toServer,
    toClient,
    protocolErrors,
    settle,
    async unary(request) {
      const reply: Buffer[] = [];
      let status: StreamStatus | undefined;
      const stream = client.openStream(
        '/test.Echo/Unary',
        { md: {} },
        {
          onHeaders: () => {},
          onMessage: (m) => {
            reply.push(m);
            stream.requestRead();
          },
          onClose: (s) => {
            status = s;
          },
        },
      );
      stream.requestRead();
      stream.sendMessage(request);
      stream.halfClose();
      await settle();
      if (!status) throw new Error('the call did not end');
      return { reply, status };
    },
  };
}

export { ReceiveWindows };
