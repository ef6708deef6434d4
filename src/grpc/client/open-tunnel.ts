import {
  type CallOptions,
  type ChannelInterface,
  type Client,
  type ClientDuplexStream,
  Metadata,
  type ServiceError,
} from '@grpc/grpc-js';
import { NEGOTIATE_HEADER, NEGOTIATE_ON } from '../../engine/constants.js';
import { ReceiveWindows } from '../../engine/receive-window.js';
import type { ClientToServer, ServerToClient } from '../../gen/grpctunnel/v1/tunnel.js';
import { abortError, statusError } from '../errors.js';
import { checkOpenTunnel } from '../options-check.js';
import { decodeServerToClient, encodeClientToServer, OPEN_TUNNEL_PATH } from '../tunnel-service.js';
import { asClient } from './as-client.js';
import { TunnelChannel, type TunnelOptions, tunnelTuning } from './tunnel-channel.js';

/** Options of {@link openTunnel}. */
export interface OpenTunnelOptions extends TunnelOptions {
  /** Request metadata of the tunnel RPC (for example credentials the server checks). */
  metadata?: Metadata;
  /** grpc-js call options of the tunnel RPC (a deadline bounds the whole tunnel's life). */
  callOptions?: CallOptions;
  /** Aborting before the tunnel is ready rejects; aborting later closes the tunnel. */
  signal?: AbortSignal;
}

/**
 * Opens a forward tunnel over an existing grpc-js connection and resolves to
 * a channel for calls through it, once the tunnel is ready (negotiation
 * done). `connection` is any grpc-js client (a generated TunnelService
 * client, or any other client on the same connection, whose interceptors
 * then apply to the tunnel RPC) or a grpc-js `Channel` (including another
 * tunnel's channel, for nested tunnels). Create that connection with
 * {@link TUNNEL_CHANNEL_OPTIONS} when large responses travel through the
 * tunnel: grpc-js's default HTTP/2 window halves their throughput.
 *
 * Rejects with a grpc-js `ServiceError` if the tunnel RPC fails before it is
 * ready (UNIMPLEMENTED when the server has no tunnel service), or with the
 * signal's reason when aborted.
 */
export function openTunnel(
  connection: Client | ChannelInterface,
  options: OpenTunnelOptions = {},
): Promise<TunnelChannel> {
  let windows: ReceiveWindows;
  try {
    checkOpenTunnel(connection, options);
    // Checks the window settings before dialing (RangeError).
    windows = new ReceiveWindows(tunnelTuning(options));
  } catch (err) {
    return Promise.reject(err);
  }
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const client = asClient(connection);
  const metadata = options.metadata?.clone() ?? new Metadata();
  metadata.set(NEGOTIATE_HEADER, NEGOTIATE_ON);
  const rpc: ClientDuplexStream<ClientToServer, ServerToClient> = client.makeBidiStreamRequest(
    OPEN_TUNNEL_PATH,
    encodeClientToServer,
    decodeServerToClient,
    metadata,
    options.callOptions ?? {},
  );
  const target = client.getChannel().getTarget();

  return new Promise<TunnelChannel>((resolve, reject) => {
    let channel: TunnelChannel | undefined;
    let ready = false;
    let ended = false;

    const onAbort = () => {
      if (channel && ready) channel.close();
      else fail(abortError(signal as AbortSignal));
    };
    const fail = (error: Error) => {
      signal?.removeEventListener('abort', onAbort);
      if (!ended) {
        ended = true;
        rpc.cancel();
      }
      if (channel) channel.shutDown(error);
      if (!ready) reject(error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    rpc.on('metadata', (headers: Metadata) => {
      const negotiated = headers.get(NEGOTIATE_HEADER)[0] === NEGOTIATE_ON;
      channel = new TunnelChannel(
        rpc,
        negotiated,
        options,
        { target, peer: rpc.getPeer(), authContext: rpc.getAuthContext?.() ?? null },
        () => {
          signal?.removeEventListener('abort', onAbort);
          if (!ended) {
            ended = true;
            rpc.cancel();
          }
        },
        (opened) => {
          ready = true;
          resolve(opened);
        },
        windows,
      );
    });
    rpc.on('error', (error: ServiceError) => {
      fail(ended ? error : statusError(error.code, `tunnel RPC failed: ${error.details}`, error.metadata));
    });
    rpc.on('end', () => {
      fail(statusError(14, 'the tunnel server ended the tunnel'));
    });
  });
}
