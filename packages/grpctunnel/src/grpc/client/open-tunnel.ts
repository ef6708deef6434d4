import { type CallOptions, type ChannelInterface, type Client, type Metadata, status as Status } from '@grpc/grpc-js';
import type { ClientFrame, ServerFrame } from '../../engine/frames.js';
import { ReceiveWindows } from '../../engine/receive-window.js';
import { abortError, statusError } from '../errors.js';
import { type LongTimer, setLongTimeout } from '../long-timer.js';
import { checkOpenTunnel } from '../options-check.js';
import { type TunnelOptions, tunnelTuning } from '../tunnel-options.js';
import { DialedTunnelRpc } from '../tunnel-rpc.js';
import {
  decodeServerToClient,
  encodeClientToServer,
  frameClientToServer,
  OPEN_TUNNEL_PATH,
} from '../tunnel-service.js';
import { asClient } from './as-client.js';
import type { ClientHttp2WindowOptions } from './client-http2-window.js';
import { type ClientKeepaliveOptions, clientKeepalive } from './client-keepalive.js';
import { carrierTarget, TunnelConnection } from './raw/connection.js';
import { type TunnelChannel, TunnelChannelImpl } from './tunnel-channel.js';

/** Options of {@link openTunnel}. */
export interface OpenTunnelOptions extends TunnelOptions, ClientKeepaliveOptions, ClientHttp2WindowOptions {
  /** Request metadata of the tunnel RPC (for example credentials the server checks). */
  metadata?: Metadata;
  /** grpc-js call options of the tunnel RPC (a deadline bounds the whole tunnel's life). */
  callOptions?: CallOptions;
  /**
   * Longest wait, in ms, for the tunnel to become ready; after it the
   * promise rejects with DEADLINE_EXCEEDED and the tunnel RPC is ended.
   * It bounds only the opening: a tunnel that opened in time stays open.
   * Default: no limit.
   */
  connectTimeoutMs?: number;
  /**
   * Aborting before the tunnel is ready rejects; aborting later closes the
   * tunnel (so it bounds the tunnel's whole life: for a limit on opening
   * alone, use `connectTimeoutMs`).
   */
  signal?: AbortSignal;
}

/**
 * Opens a forward tunnel over an existing grpc-js connection and resolves to
 * a channel for calls through it, once the tunnel is ready (negotiation
 * done). `connection` is any grpc-js client (a generated TunnelService
 * client, or any other client on the same connection, whose interceptors
 * then apply to the tunnel RPC) or a grpc-js `Channel` (including another
 * tunnel's channel, for nested tunnels), or a {@link TunnelConnection}: then
 * the tunnel RPC runs on the library's own HTTP/2 session rather than as a
 * grpc-js call (faster per frame; grpc-js interceptors and call credentials
 * do not apply, and of `callOptions` only the deadline does). The connection's HTTP/2 receive
 * windows are raised when the tunnel opens (`http2WindowSize`), and a
 * server of this library agrees on larger chunks (`maxChunkSize`), so a
 * connection made with grpc-js's defaults streams about as fast as a direct
 * call.
 *
 * Rejects with a grpc-js `ServiceError` if the tunnel RPC fails before it is
 * ready (UNIMPLEMENTED when the server has no tunnel service), with
 * DEADLINE_EXCEEDED when `connectTimeoutMs` runs out, or with the signal's
 * reason when aborted.
 */
export function openTunnel(
  connection: Client | ChannelInterface | TunnelConnection,
  options: OpenTunnelOptions = {},
): Promise<TunnelChannel> {
  let windows: ReceiveWindows;
  let keepalive: ReturnType<typeof clientKeepalive>;
  try {
    checkOpenTunnel(connection, options, connection instanceof TunnelConnection);
    checkConnectTimeout(options.connectTimeoutMs);
    // Checks the window and keepalive settings before dialing (RangeError).
    windows = new ReceiveWindows(tunnelTuning(options));
    keepalive = clientKeepalive(options);
  } catch (err) {
    return Promise.reject(err);
  }
  const { signal, connectTimeoutMs } = options;
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const via = connection instanceof TunnelConnection ? { connection } : { client: asClient(connection) };
  const rpc = new DialedTunnelRpc<ClientFrame, ServerFrame>({
    via,
    path: OPEN_TUNNEL_PATH,
    serialize: encodeClientToServer,
    frame: frameClientToServer,
    deserialize: decodeServerToClient,
    metadata: options.metadata,
    callOptions: options.callOptions,
    maxChunkSize: options.maxChunkSize,
    keepalive,
    http2WindowSize: options.http2WindowSize,
  });
  const target = carrierTarget(via);

  return new Promise<TunnelChannel>((resolve, reject) => {
    let channel: TunnelChannelImpl | undefined;
    let ready = false;
    let connectTimer: LongTimer | undefined;
    let unwatch = () => {};

    const onAbort = () => {
      if (channel && ready) channel.close();
      else fail(abortError(signal as AbortSignal));
    };
    const fail = (error: Error) => {
      connectTimer?.clear();
      signal?.removeEventListener('abort', onAbort);
      rpc.end();
      if (channel) channel.shutDown(error);
      if (!ready) reject(error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (connectTimeoutMs !== undefined) {
      connectTimer = setLongTimeout(
        () => fail(statusError(Status.DEADLINE_EXCEEDED, `the tunnel was not ready within ${connectTimeoutMs} ms`)),
        connectTimeoutMs,
      );
    }

    rpc.onAnswer(({ headers, ...negotiation }) => {
      channel = new TunnelChannelImpl({
        frames: rpc.frames,
        negotiation,
        tuning: options,
        info: { target, peer: rpc.call.getPeer(), authContext: rpc.call.getAuthContext?.() ?? null },
        windows,
        endRpc: (error) => {
          unwatch();
          signal?.removeEventListener('abort', onAbort);
          rpc.end();
          // Ended before it was ready (a protocol error in negotiation): that
          // is the cause the caller hears, not the RPC's end that follows.
          if (!ready && error) {
            connectTimer?.clear();
            reject(error);
          }
        },
        onReady: (opened) => {
          ready = true;
          connectTimer?.clear();
          resolve(opened);
        },
      });
      const opened = channel;
      unwatch = rpc.watchConnection(headers, (cause) =>
        ready ? opened.shutDown(cause) : fail(statusError(Status.UNAVAILABLE, `tunnel RPC failed: ${cause.message}`)),
      );
    });
    rpc.onEnd('tunnel RPC failed', 'the tunnel server ended the tunnel', fail);
  });
}

/** Rejects connect timeouts that are not a number of ms (RangeError), before dialing. */
function checkConnectTimeout(ms: number | undefined): void {
  if (ms === undefined) return;
  if (typeof ms !== 'number' || Number.isNaN(ms) || ms < 0) {
    throw new RangeError(`connectTimeoutMs must be a non-negative number of milliseconds, got ${ms}`);
  }
}
