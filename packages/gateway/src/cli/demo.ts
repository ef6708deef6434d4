// npm start: the gateway and agent on embedded defaults, in one process.
// A sample gRPC service listens on loopback as if behind NAT; an agent dials
// out to a gateway and exposes it; a plain grpc-js client calls the gateway
// with one call of each kind. Then the gateway stays up, with its admin page,
// until Ctrl-C (or exits at once with --once). Also shows a forward tunnel.
import { type ChannelInterface, connectivityState, credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import { openTunnel, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { AgentTokens, createLogger, startAgent, startGateway } from '../gateway/index.js';
import { addNotesService, type Note, NotesClient, NotesService, notesImplementation } from './demo-service.js';

type Notes = InstanceType<typeof NotesClient> & Record<string, any>;

function log(step: string, detail: string): void {
  console.log(`${step.padEnd(22)} ${detail}`);
}

/** Resolves once `channel` is READY, or rejects at `deadline`. */
function ready(channel: ChannelInterface, deadline: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (error?: Error) => {
      if (error) return reject(error);
      const state = channel.getConnectivityState(true);
      if (state === connectivityState.READY) return resolve();
      channel.watchConnectivityState(state, deadline, check);
    };
    check();
  });
}

async function listen(server: Server): Promise<string> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return `127.0.0.1:${port}`;
}

/** One call of each kind through `notes`, printed. */
async function everyKind(notes: Notes): Promise<void> {
  const unary = await new Promise<Note>((resolve, reject) =>
    notes.echo({ text: 'hello' }, (err: Error | null, reply: Note) => (err ? reject(err) : resolve(reply))),
  );
  log('unary', unary.text);
  const counted = await new Promise<Note>((resolve, reject) => {
    const call = notes.count((err: Error | null, reply: Note) => (err ? reject(err) : resolve(reply)));
    for (const text of ['a', 'b', 'c']) call.write({ text });
    call.end();
  });
  log('client streaming', counted.text);
  const repeated: string[] = [];
  for await (const note of notes.repeat({ text: 'tick', n: 3 }) as AsyncIterable<Note>) repeated.push(note.text);
  log('server streaming', repeated.join(', '));
  const chat = notes.chat();
  const replies: string[] = [];
  const chatDone = new Promise<void>((resolve, reject) => {
    chat.on('data', (note: Note) => replies.push(note.text));
    chat.on('end', resolve);
    chat.on('error', reject);
  });
  for (const text of ['ping', 'pong']) chat.write({ text });
  chat.end();
  await chatDone;
  log('bidi streaming', replies.join(', '));
}

async function main(): Promise<void> {
  const once = process.argv.includes('--once');
  const quiet = createLogger('warn');

  // 1. A service that cannot be dialed from outside (here: just loopback).
  const target = new Server();
  addNotesService(target);
  const targetAddress = await listen(target);
  log('sample service', `demo.Notes (with server reflection) on ${targetAddress}`);

  // 2. The gateway: agents on one port, callers on another, admin on a third.
  const gateway = await startGateway({
    listen: '127.0.0.1:0',
    agents: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    access: { agentTokens: AgentTokens.anyId(['demo-token']) },
    logger: quiet,
  });
  log('gateway', `callers on ${gateway.listenAddress}, agents on ${gateway.agentsAddress}`);

  // 3. The agent dials out to the gateway and exposes the service.
  const agent = startAgent({
    gateway: gateway.agentsAddress,
    target: targetAddress,
    id: 'laptop',
    token: 'demo-token',
    tunnels: 2,
    security: { insecure: true },
    logger: quiet,
  });
  // (A young gateway would hold calls for an agent on its way anyway; this
  // waits only to say when it arrived.)
  await ready(gateway.channelFor('laptop'), Date.now() + 5000);
  const tunnels = gateway.agents().get('laptop') ?? 0;
  log('agent', `"laptop" connected with ${tunnels} tunnel${tunnels === 1 ? '' : 's'} (it asked for 2)`);

  // 4. Any gRPC client calls the gateway as if it were the service.
  console.log('--- through the gateway to the agent (neither needs the .proto) ---');
  const viaGateway = new NotesClient(gateway.listenAddress, credentials.createInsecure()) as Notes;
  await everyKind(viaGateway);
  viaGateway.close();

  // 5. The library underneath: a forward tunnel, one call of each kind.
  console.log('--- the library: a forward tunnel ---');
  const handler = new TunnelServiceHandler();
  handler.addService(NotesService, notesImplementation);
  const tunnelServer = new Server();
  handler.register(tunnelServer);
  const tunnelAddress = await listen(tunnelServer);
  const connection = new TunnelConnection(tunnelAddress);
  const tunnel = await openTunnel(connection, { signal: AbortSignal.timeout(5000) });
  log('forward tunnel', `open to ${tunnelAddress} (protocol revision ${tunnel.protocolRevision})`);
  await everyKind(new NotesClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel }) as Notes);
  tunnel.close();
  connection.close();
  await new Promise<void>((resolve) => tunnelServer.tryShutdown(() => resolve()));

  const metrics = await (await fetch(`http://${gateway.adminAddress}/metrics`)).text();
  const calls = [...metrics.matchAll(/^grpctunnel_gateway_calls_total\{.*code="OK"\} (\d+)$/gm)].reduce(
    (n, m) => n + Number(m[1]),
    0,
  );
  log('gateway metrics', `${calls} calls forwarded OK (see /metrics)`);

  const stop = async () => {
    await agent.stop();
    await gateway.close();
    await new Promise<void>((resolve) => target.tryShutdown(() => resolve()));
  };
  if (once) {
    await stop();
    log('done', 'everything stopped');
    return;
  }
  log('admin', `http://${gateway.adminAddress}/  (Ctrl-C to stop)`);
  log('try it', 'the agent stays connected; any gRPC client can call the gateway, e.g. grpcurl (reflection):');
  console.log(`  grpcurl -plaintext -H 'grpctunnel-agent: laptop' ${gateway.listenAddress} list`);
  console.log(
    `  grpcurl -plaintext -H 'grpctunnel-agent: laptop' -d '{"text": "hi"}' ${gateway.listenAddress} demo.Notes/Echo`,
  );
  process.once('SIGINT', () => void stop().then(() => process.exit(0)));
  process.once('SIGTERM', () => void stop().then(() => process.exit(0)));
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
