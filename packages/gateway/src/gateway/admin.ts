// The gateway's admin port: /metrics (Prometheus), /healthz, and / (a small
// status page of agents, tunnels and recent errors).
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { ReverseTunnel } from 'grpctunnel';
import { bearer, digest } from './access.js';
import type { RecentError } from './gateway.js';
import { listenHttp2 } from './net.js';

export interface AdminServer {
  readonly address: string;
  close(): Promise<void>;
}

interface AdminSources {
  metrics(): Promise<string>;
  contentType: string;
  status(): { agents: ReverseTunnel[]; recent: RecentError[]; replica?: string };
  /** Whether callers should be sent here (/healthz); /livez only says the process answers. */
  ready?(): boolean;
  /** The bearer token / and /metrics ask for (agent ids, peers and errors are not for everyone); none: open. */
  token?: string | undefined;
}

/**
 * Whether a request's `authorization` header carries the token whose digest
 * is `expected` (compared by digest, in constant time, as the gateway's other
 * tokens are).
 */
function bears(header: string | undefined, expected: Buffer): boolean {
  const sent = bearer(header);
  return sent !== undefined && timingSafeEqual(Buffer.from(digest(sent)), expected);
}

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

function page(status: ReturnType<AdminSources['status']>): string {
  const byAgent = new Map<string, ReverseTunnel[]>();
  for (const t of status.agents) byAgent.set(String(t.key), [...(byAgent.get(String(t.key)) ?? []), t]);
  const agentRows = [...byAgent]
    .map(
      ([id, tunnels]) =>
        `<tr><td>${escapeHtml(id)}</td><td>${tunnels.length}</td><td>${tunnels.reduce((n, t) => n + t.channel.activeCalls, 0)}</td>` +
        `<td>${escapeHtml([...new Set(tunnels.map((t) => t.info.peer))].join(', '))}</td>` +
        `<td>${escapeHtml(tunnels[0]?.openedAt.toISOString() ?? '')}</td></tr>`,
    )
    .join('');
  const errorRows = status.recent
    .map((e) => `<tr><td>${escapeHtml(e.at.toISOString())}</td><td>${escapeHtml(e.what)}</td></tr>`)
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>grpctunnel gateway</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style>
</head><body><h1>grpctunnel gateway${status.replica ? ` ${escapeHtml(status.replica)}` : ''}</h1>
<h2>Agents</h2><table><tr><th>id</th><th>tunnels</th><th>active calls</th><th>from</th><th>since</th></tr>${agentRows || '<tr><td colspan="5">none connected</td></tr>'}</table>
<h2>Recent errors</h2><table><tr><th>when</th><th>what</th></tr>${errorRows || '<tr><td colspan="2">none</td></tr>'}</table>
<p><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a></p></body></html>`;
}

export async function startAdmin(address: string, sources: AdminSources): Promise<AdminServer> {
  const expected = sources.token === undefined ? undefined : Buffer.from(digest(sources.token));
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/healthz') {
      const ready = sources.ready?.() ?? true;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ok\n' : 'not ready\n');
    } else if (path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if ((path === '/metrics' || path === '/') && expected && !bears(req.headers.authorization, expected)) {
      // The probes above stay open: a kubelet sends no credentials.
      res
        .writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="grpctunnel gateway admin"' })
        .end('this page needs the admin token (authorization: Bearer TOKEN)\n');
    } else if (path === '/metrics') {
      sources.metrics().then(
        (body) => res.writeHead(200, { 'content-type': sources.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    } else if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(sources.status()));
    } else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  const bound = await listenHttp2(server, address);
  return {
    address: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
