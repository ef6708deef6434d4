// npm start: a self-contained tour. One process starts a gRPC server with the
// tunnel service, opens a forward tunnel to it, and makes one call of each
// kind through the tunnel, printing what happened.
import { credentials, Metadata, makeGenericClientConstructor, Server, ServerCredentials } from '@grpc/grpc-js';
import { createTunnelClient, getTunnelInfo, openTunnel, ReverseTunnelServer, TunnelServiceHandler } from '../index.js';
import { type Note, NotesService, notesImplementation } from './demo-service.js';

const NotesClient = makeGenericClientConstructor(NotesService, 'Notes');

function log(step: string, detail: string): void {
  console.log(`${step.padEnd(22)} ${detail}`);
}

async function main(): Promise<void> {
  const handler = new TunnelServiceHandler({ affinityKey: (t) => t.metadata.get('x-agent-id')[0] });
  handler.addService(NotesService, notesImplementation);
  const server = new Server();
  handler.register(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  log('server', `listening on 127.0.0.1:${port} with grpctunnel.v1.TunnelService`);

  const connection = new NotesClient(`127.0.0.1:${port}`, credentials.createInsecure());
  const tunnel = await openTunnel(connection, { signal: AbortSignal.timeout(5000) });
  log('forward tunnel', `open (protocol revision ${tunnel.protocolRevision})`);
  const notes = createTunnelClient(NotesClient, tunnel) as InstanceType<typeof NotesClient> & Record<string, any>;

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

  tunnel.close();
  log('forward tunnel', 'closed');

  // Reverse: this side serves, the network server calls it back.
  const agent = new ReverseTunnelServer(connection);
  agent.addService(NotesService, {
    ...notesImplementation,
    echo: (call: { request: Note; getAuthContext(): unknown }, callback: (e: null, n: Note) => void) => {
      const tunnel = getTunnelInfo(call);
      callback(null, {
        text: `agent got "${call.request.text}" through a ${tunnel?.kind} tunnel from ${tunnel?.peer}`,
      });
    },
  });
  const metadata = new Metadata();
  metadata.set('x-agent-id', 'agent-1');
  const served = agent.serve({ metadata });
  const pool = handler.keyAsChannel('agent-1');
  await pool.waitForReady({ timeout: 5000 });
  log('reverse tunnel', `agent-1 connected (${handler.allReverseTunnels().length} reverse tunnel open)`);
  const back = new NotesClient('agent-1', credentials.createInsecure(), { channelOverride: pool }) as InstanceType<
    typeof NotesClient
  > &
    Record<string, any>;
  const answer = await new Promise<Note>((resolve, reject) =>
    back.echo({ text: 'hello agent' }, (err: Error | null, reply: Note) => (err ? reject(err) : resolve(reply))),
  );
  log('server -> agent', answer.text);
  await agent.gracefulStop();
  const result = await served;
  log('reverse tunnel', `ended ${result.error ? `with ${result.error.message}` : 'cleanly'}`);

  connection.close();
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  log('done', 'server stopped');
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
