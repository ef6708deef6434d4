/**
 * The grpctunnel gateway and agent as a library (`grpctunnel-gateway`):
 * embed the gateway in a Node service with hooks for caller authentication,
 * routing and agent admission, or run agents from a program. The
 * `grpctunnel` command is a thin layer of flags over these functions.
 *
 * @packageDocumentation
 */

// The library's types that this API mentions, so that the entry point is
// complete on its own (the same types as grpctunnel's).
export type { AuthContext, KeepaliveOptions } from 'grpctunnel';
export { AccessFileError, AccessPolicy, type AgentRefusal, AgentTokens, CallerTokens } from './access.js';
export { type Agent, AgentFailure, type AgentOptions, type ServiceRegistrar, startAgent } from './agent.js';
export {
  AGENT_HEADER,
  type AgentTunnelRequest,
  type CallerIdentity,
  type Gateway,
  type GatewayAccess,
  type GatewayCloseOptions,
  type GatewayHooks,
  type GatewayOptions,
  GatewayRefusal,
  type IncomingCall,
  startGateway,
} from './gateway.js';
export { createLogger, LOG_LEVELS, type Logger, type LogLevel, silentLogger } from './logger.js';
export type { PeerLimits } from './peer-limits.js';
export type { ReplicaAdvert } from './replicas.js';
