import {
  type ChannelInterface,
  type Client,
  type ClientDuplexStream,
  Metadata,
  type ServerDuplexStream,
  type ServiceError,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import { asClient } from '../grpc/client/as-client.js';
import { isTransportHeader } from '../grpc/metadata.js';
import { checkProxyHandler } from '../grpc/options-check.js';
import { onFinalStatus, rawBytes, relay } from './upstream.js';

/** Options of {@link createProxyHandler}. */
export interface ProxyHandlerOptions {
  /** Changes the metadata forwarded to the target (e.g. drop routing headers). */
  rewriteMetadata?: (metadata: Metadata) => Metadata;
  /** Called once per proxied call with its outcome (for logs and metrics). */
  onFinish?: (path: string, status: StatusObject) => void;
}

/**
 * A handler for `setUnknownMethodHandler` that forwards every call, of any
 * kind, to `target` (a grpc-js client or channel) as raw message bytes:
 * metadata, response headers, messages, trailers, status with details,
 * deadline and cancellation pass through in both directions, with flow
 * control end to end (each side reads only as fast as the other writes).
 */
export function createProxyHandler(target: Client | ChannelInterface, options: ProxyHandlerOptions = {}) {
  checkProxyHandler(target, options);
  const client = asClient(target);
  return (call: ServerDuplexStream<Buffer, Buffer>): void => {
    const path = call.getPath();
    let metadata = new Metadata();
    for (const [key, values] of Object.entries(call.metadata.toJSON())) {
      // One hop's headers stay behind, as they do at a tunnel's edge.
      if (isTransportHeader(key)) continue;
      for (const v of values as Array<string | Buffer>) metadata.add(key, v);
    }
    if (options.rewriteMetadata) metadata = options.rewriteMetadata(metadata);
    const deadline = call.getDeadline();
    const upstream: ClientDuplexStream<Buffer, Buffer> = client.makeBidiStreamRequest(
      path,
      rawBytes,
      rawBytes,
      metadata,
      {
        deadline,
      },
    );
    let finished = false;
    upstream.on('metadata', (headers: Metadata) => call.sendMetadata(headers));
    // Requests: the caller's messages go up as fast as the target takes them.
    call.on('data', (message: Buffer) => relay(message, upstream, call));
    call.on('end', () => upstream.end());
    // Responses: the target's messages come down as fast as the caller reads.
    upstream.on('data', (message: Buffer) => relay(message, call, upstream));
    const finish = (status: StatusObject) => {
      if (finished) return;
      finished = true;
      options.onFinish?.(path, status);
      if (status.code === Status.OK) call.end(status.metadata);
      else {
        const error = {
          code: status.code,
          details: status.details,
          metadata: status.metadata,
        } as Partial<ServiceError>;
        call.emit('error', error);
      }
    };
    onFinalStatus(upstream, finish);
    call.on('cancelled', () => {
      if (finished) return;
      finished = true;
      upstream.cancel();
      options.onFinish?.(path, { code: Status.CANCELLED, details: 'Cancelled', metadata: new Metadata() });
    });
  };
}
