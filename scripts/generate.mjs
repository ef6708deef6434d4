// Regenerates the checked-in protobuf code from the .proto files (npm run generate).
import { execFileSync } from 'node:child_process';

const run = (args) => execFileSync('buf', args, { stdio: 'inherit' });
const tunnelProtos = ['--path', 'packages/grpctunnel/proto/grpctunnel', '--path', 'packages/grpctunnel/proto/google'];
// The tunnel's frames (packages/grpctunnel/src/gen) and the codec comparison's protobuf-es copy.
run(['generate', ...tunnelProtos]);
run(['generate', '--template', 'buf.gen.codec-bench.yaml', ...tunnelProtos]);
// The cross-implementation programs' services (interop/gen).
// google.rpc.Status too: the test service encodes rich error details with it,
// and the interop programs use the library only through its entry points.
run([
  'generate',
  '--template',
  'buf.gen.interop.yaml',
  '--path',
  'proto/grpchantesting',
  '--path',
  'proto/tunneltest',
  '--path',
  'packages/grpctunnel/proto/google/rpc',
]);
// The README examples' service (examples/gen).
run(['generate', 'examples/proto', '--template', 'buf.gen.examples.yaml']);
// protobuf-es code for the Connect-ES tests (test/connect/gen) and examples (examples/gen-es).
run(['generate', '--template', 'buf.gen.connect.yaml', '--path', 'proto/connecttest']);
run(['generate', 'examples/proto', '--template', 'buf.gen.connect-examples.yaml']);
