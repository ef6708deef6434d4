import { ProtocolRevision, type Settings } from '../gen/grpctunnel/v1/tunnel.js';
import { DEFAULT_WINDOW_SIZE, MAX_CHUNK_SIZE, MAX_EXTENDED_CHUNK_SIZE, TUNNEL_STREAM_ID } from './constants.js';

/** Revisions a side supports, given whether it runs flow control. */
export function supportedRevisions(flowControl: boolean): ProtocolRevision[] {
  return flowControl
    ? [ProtocolRevision.REVISION_ZERO, ProtocolRevision.REVISION_ONE]
    : [ProtocolRevision.REVISION_ZERO];
}

/** The Settings frame a tunnel server sends first on a negotiated tunnel. */
export function settingsFrame(flowControl: boolean, initialWindowSize: number) {
  return {
    streamId: TUNNEL_STREAM_ID,
    frame: {
      $case: 'settings' as const,
      value: { supportedProtocolRevisions: supportedRevisions(flowControl), initialWindowSize },
    },
  };
}

/** What a tunnel client runs after negotiation: a revision and its initial send window. */
export interface NegotiatedRevision {
  readonly revision: ProtocolRevision;
  /** Send window of each new stream; Infinity without flow control. */
  readonly sendWindow: number;
}

/** Revision zero: no Settings, no flow control. */
export const REVISION_ZERO: NegotiatedRevision = {
  revision: ProtocolRevision.REVISION_ZERO,
  sendWindow: Number.POSITIVE_INFINITY,
};

/**
 * Picks the highest revision both sides support. Settings is absent when the
 * peer did not advertise negotiation.
 */
export function chooseRevision(settings: Settings | undefined, flowControl: boolean): NegotiatedRevision {
  if (!settings || !flowControl) return REVISION_ZERO;
  if (!settings.supportedProtocolRevisions.includes(ProtocolRevision.REVISION_ONE)) return REVISION_ZERO;
  return {
    revision: ProtocolRevision.REVISION_ONE,
    sendWindow: settings.initialWindowSize || DEFAULT_WINDOW_SIZE,
  };
}

/** Whether a method path looks like "/package.Service/Method". */
export function isValidMethodName(name: string): boolean {
  if (name.length < 4 || name.charCodeAt(0) !== 47 /* / */) return false;
  const slash = name.indexOf('/', 1);
  return slash > 1 && slash < name.length - 1 && name.indexOf('/', slash + 1) === -1;
}

/**
 * The chunk size two peers of this library agree on, or undefined when the
 * tunnel keeps the protocol's 16 KiB chunks.
 *
 * The large-chunk extension: each side of this library that wants it
 * advertises the largest chunk it accepts in its tunnel RPC headers
 * (`grpctunnel-max-chunk-size`, CHUNK_SIZE_HEADER); only when both did, both send and accept
 * chunks up to the smaller of the two. A peer that advertises nothing (the
 * Go reference, an older version, or this library with the extension off)
 * therefore sees exactly the protocol's chunks, and its own larger chunks
 * are refused as they always were. Fewer, larger messages on the tunnel RPC
 * are what lets a tunnel stream as fast as a direct call: grpc-js pays a
 * fixed cost per message on both ends.
 *
 * `own`: the largest chunk this side accepts (at most
 * MAX_EXTENDED_CHUNK_SIZE; 16384 or less means the extension is off);
 * `advertised`: the peer's header value, if it sent one.
 */
export function negotiateChunkSize(own: number, advertised: string | undefined): number | undefined {
  if (own <= MAX_CHUNK_SIZE || advertised === undefined || !/^[0-9]{1,10}$/.test(advertised)) return undefined;
  const peer = Number(advertised);
  if (peer <= MAX_CHUNK_SIZE) return undefined;
  return Math.min(own, peer, MAX_EXTENDED_CHUNK_SIZE);
}
