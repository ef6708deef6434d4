// Who is calling the gateway's caller port: a bearer token from the caller
// tokens file, or the client certificate of a mutual-TLS connection. The
// verdict names the caller (for the policy, logs and metrics) or says why
// the call is refused with UNAUTHENTICATED, before anything is forwarded.
import type { PeerCertificate } from 'node:tls';
import { bearer, type CallerTokens } from './access.js';

/** How callers prove who they are. */
export interface CallerAuthConfig {
  /** Bearer tokens (`authorization: Bearer T`), each naming a caller. */
  tokens?: CallerTokens;
  /** Whether the port asks for client certificates (verified against the configured CA). */
  clientCertificates?: boolean;
  /** With neither, every caller is let in as "anonymous" (only with an explicit flag). */
}

/** The connection facts a verdict may rest on. */
export interface CallerConnection {
  /** The TLS socket, when the port serves TLS. */
  readonly tls?: {
    readonly authorized: boolean;
    readonly authorizationError?: Error | string | null;
    getPeerCertificate(): PeerCertificate;
  };
}

/** Who the caller is, or why not. */
export type CallerVerdict = { readonly caller: string } | { readonly refused: string };

/** The caller name a certificate gives: its subject's common name, else its first DNS name. */
export function certificateName(cert: PeerCertificate): string | undefined {
  const cn = cert.subject?.CN;
  if (typeof cn === 'string' && cn) return cn;
  const dns = /(?:^|, )DNS:([^,]+)/.exec(cert.subjectaltname ?? '')?.[1];
  return dns || undefined;
}

/**
 * Decides who a call comes from. A bearer token, when present, must be
 * valid (a wrong token is refused even on a connection with a good
 * certificate: the caller said who it is, and that was false).
 */
export function identifyCaller(
  authorization: string | undefined,
  connection: CallerConnection,
  config: CallerAuthConfig,
): CallerVerdict {
  if (!config.tokens && !config.clientCertificates) return { caller: 'anonymous' };
  if (authorization !== undefined && config.tokens) {
    const token = bearer(authorization);
    const caller = config.tokens.identify(token);
    return caller ? { caller } : { refused: token ? 'unknown caller token' : 'malformed authorization header' };
  }
  if (config.clientCertificates) {
    const tls = connection.tls;
    if (!tls) return { refused: 'no TLS connection for a client certificate' };
    if (!tls.authorized) {
      const cert = tls.getPeerCertificate();
      const had = cert && Object.keys(cert).length > 0;
      return {
        refused: had ? `client certificate not trusted (${String(tls.authorizationError)})` : 'no client certificate',
      };
    }
    const name = certificateName(tls.getPeerCertificate());
    return name ? { caller: name } : { refused: 'client certificate names no caller (no CN or DNS name)' };
  }
  return { refused: 'no caller token' };
}
