/**
 * grpctunnel/connect: Connect-ES clients through tunnels, and Connect-ES
 * service implementations served through tunnels. Needs
 * `@connectrpc/connect` v2 (an optional peer dependency of grpctunnel).
 *
 * @packageDocumentation
 */

export { getTunnelInfoFromContext, tunnelInfoKey } from './context.js';
export {
  addConnectService,
  type ConnectServiceDefinition,
  type ConnectServiceOptions,
  connectServiceDefinition,
  type ServiceAdder,
} from './service.js';
export { createTunnelTransport, type TunnelTransportOptions } from './transport.js';
