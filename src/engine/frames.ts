import type { ClientToServer, Metadata, ServerToClient } from '../gen/grpctunnel/v1/tunnel.js';
import type { DataFrameBuilder } from './outbound.js';

/** Data frames sent by a tunnel client (request messages). */
export const clientDataFrames: DataFrameBuilder<ClientToServer> = {
  messageStart: (streamId, size, chunk) => ({
    streamId,
    frame: { $case: 'requestMessage', value: { size, data: chunk } },
  }),
  moreData: (streamId, chunk) => ({ streamId, frame: { $case: 'moreRequestData', value: chunk } }),
};

/** Data frames sent by a tunnel server (response messages). */
export const serverDataFrames: DataFrameBuilder<ServerToClient> = {
  messageStart: (streamId, size, chunk) => ({
    streamId,
    frame: { $case: 'responseMessage', value: { size, data: chunk } },
  }),
  moreData: (streamId, chunk) => ({ streamId, frame: { $case: 'moreResponseData', value: chunk } }),
};

/** An empty metadata map. */
export function emptyMetadata(): Metadata {
  return { md: {} };
}
