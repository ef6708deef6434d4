// Regenerates the checked-in protobuf code from proto/ (npm run generate).
import { execFileSync } from 'node:child_process';

const run = (args) => execFileSync('buf', args, { stdio: 'inherit' });
run(['generate']);
run(['generate', '--template', 'buf.gen.codec-bench.yaml']);
run(['generate', 'examples/proto', '--template', 'buf.gen.examples.yaml']);
