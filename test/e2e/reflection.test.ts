// gRPC server reflection passes through the gateway like any other method,
// so tools that discover services by reflection (grpcurl, Postman, grpcui,
// Evans) can call a target behind an agent with only the grpctunnel-agent
// header. The client here speaks the reflection protocol from the .proto the
// @grpc/reflection package ships, as such a tool would.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import {
  type Client,
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  Metadata,
  type Server,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { addNotesService } from '#gateway/cli/demo-service.js';
import { type CliProcess, killAll, runCli } from '../helpers/cli.js';
import { startServer, stopServer } from '../helpers/servers.js';

const require = createRequire(import.meta.url);
const REFLECTION_PROTO = join(
  dirname(require.resolve('@grpc/reflection/package.json')),
  'build/proto/grpc/reflection/v1/reflection.proto',
);

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

type ReflectionClient = Client & {
  serverReflectionInfo(metadata: Metadata): import('@grpc/grpc-js').ClientDuplexStream<object, ReflectionResponse>;
};

/** One request/response exchange on a reflection stream. */
function ask(client: ReflectionClient, request: object): Promise<ReflectionResponse> {
  const md = new Metadata();
  md.set('grpctunnel-agent', 'laptop');
  return new Promise((resolve, reject) => {
    const call = client.serverReflectionInfo(md);
    const replies: ReflectionResponse[] = [];
    call.on('data', (r: ReflectionResponse) => replies.push(r));
    call.on('error', reject);
    call.on('end', () => resolve(replies[0] as ReflectionResponse));
    call.write(request);
    call.end();
  });
}

let target: { server: Server; address: string };
let gateway: CliProcess;
let agent: CliProcess;
let reflection: ReflectionClient;

before(async () => {
  target = await startServer((s) => addNotesService(s));
  gateway = runCli(['gateway', '--listen', '127.0.0.1:0', '--agents', '127.0.0.1:0', '--token', 't']);
  const m = await gateway.waitFor(/callers on (\S+), agents on (\S+)/);
  agent = runCli([
    'agent',
    '--gateway',
    (m[2] as string).replace(/,$/, ''),
    '--target',
    target.address,
    '--id',
    'laptop',
    '--token',
    't',
    '--insecure',
  ]);
  await gateway.waitFor(/agent laptop connected/);
  const pkg = loadPackageDefinition(loadSync(REFLECTION_PROTO, { defaults: true }));
  const Reflection = ((pkg.grpc as GrpcObject).reflection as GrpcObject).v1 as GrpcObject;
  const Constructor = Reflection.ServerReflection as ServiceClientConstructor;
  reflection = new Constructor(m[1] as string, credentials.createInsecure()) as unknown as ReflectionClient;
});

after(async () => {
  reflection.close();
  await agent.stop();
  await gateway.stop();
  await stopServer(target.server);
  await killAll();
});

it('a reflection client lists the target services through the gateway', async () => {
  const reply = await ask(reflection, { listServices: '' });
  const names = reply.listServicesResponse?.service.map((s) => s.name).sort();
  assert.deepEqual(names, ['demo.Notes']);
});

it('and fetches the descriptor of a service, enough to call it', async () => {
  const reply = await ask(reflection, { fileContainingSymbol: 'demo.Notes' });
  const files = (reply.fileDescriptorResponse?.fileDescriptorProto ?? []).map((b) =>
    fromBinary(FileDescriptorProtoSchema, b),
  );
  const file = files.find((f) => f.service.some((s) => s.name === 'Notes'));
  assert.ok(file, `a file declares demo.Notes (got ${files.map((f) => f.name).join(', ')})`);
  assert.equal(file.package, 'demo');
  const notes = file.service.find((s) => s.name === 'Notes');
  assert.deepEqual(
    notes?.method.map((m) => [m.name, m.clientStreaming, m.serverStreaming]),
    [
      ['Echo', false, false],
      ['Count', true, false],
      ['Repeat', false, true],
      ['Chat', true, true],
    ],
  );
  assert.deepEqual(
    file.messageType.find((t) => t.name === 'Note')?.field.map((f) => f.name),
    ['text', 'n'],
  );
});

it('an unknown symbol gets reflection NOT_FOUND from the target, not a gateway error', async () => {
  const reply = await ask(reflection, { fileContainingSymbol: 'no.such.Service' });
  assert.equal(reply.errorResponse?.errorCode, 5);
});
