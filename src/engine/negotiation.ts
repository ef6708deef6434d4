import { ProtocolRevision, type Settings } from '../gen/grpctunnel/v1/tunnel.js';
import { DEFAULT_WINDOW_SIZE, TUNNEL_STREAM_ID } from './constants.js';

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
