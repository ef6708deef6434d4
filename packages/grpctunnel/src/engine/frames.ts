import type { ClientToServer, ServerToClient } from '../gen/grpctunnel/v1/tunnel.js';
import type { DataFrameBuilder } from './outbound.js';
import type { StreamId } from './stream-id.js';

/**
 * A ClientToServer frame as the engine sees it: the generated type with the
 * stream id widened to the full int64 range (a bigint beyond 2^53).
 */
export type ClientFrame = Omit<ClientToServer, 'streamId'> & { streamId: StreamId };
/** A ServerToClient frame as the engine sees it (see {@link ClientFrame}). */
export type ServerFrame = Omit<ServerToClient, 'streamId'> & { streamId: StreamId };

/** Data frames sent by a tunnel client (request messages). */
export const clientDataFrames: DataFrameBuilder<ClientFrame> = {
  messageStart: (streamId, size, chunk) => ({
    streamId,
    frame: { $case: 'requestMessage', value: { size, data: chunk } },
  }),
  moreData: (streamId, chunk) => ({ streamId, frame: { $case: 'moreRequestData', value: chunk } }),
};

/** Data frames sent by a tunnel server (response messages). */
export const serverDataFrames: DataFrameBuilder<ServerFrame> = {
  messageStart: (streamId, size, chunk) => ({
    streamId,
    frame: { $case: 'responseMessage', value: { size, data: chunk } },
  }),
  moreData: (streamId, chunk) => ({ streamId, frame: { $case: 'moreResponseData', value: chunk } }),
};
