import { type Client, type ClientOptions, credentials } from '@grpc/grpc-js';
import { checkCreateTunnelClient } from '../options-check.js';
import type { TunnelChannel } from './tunnel-channel.js';

/** A generated grpc-js client class (from grpc-tools, ts-proto, or `loadPackageDefinition`). */
export type ClientConstructor<C extends Client> = new (
  address: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  options?: ClientOptions,
) => C;

/**
 * Creates a generated grpc-js client whose calls go through a tunnel, in one
 * call: `createTunnelClient(EchoClient, tunnel)`. The same as passing the
 * tunnel as `channelOverride`. Closing the client closes the tunnel, as
 * closing any grpc-js client closes its channel.
 */
export function createTunnelClient<C extends Client>(
  clientClass: ClientConstructor<C>,
  tunnel: TunnelChannel,
  options: ClientOptions = {},
): C {
  checkCreateTunnelClient(clientClass, tunnel, options);
  return new clientClass(tunnel.getTarget(), credentials.createInsecure(), { ...options, channelOverride: tunnel });
}
