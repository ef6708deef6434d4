import { type ChannelInterface, Client, credentials } from '@grpc/grpc-js';

/** A grpc-js client to make the tunnel RPC with: the given one, or a bare client over the given channel. */
export function asClient(connection: Client | ChannelInterface): Client {
  if (connection instanceof Client) return connection;
  return new Client('tunnel', credentials.createInsecure(), { channelOverride: connection });
}
