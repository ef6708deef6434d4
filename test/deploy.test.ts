// The deployment files under deploy/: every Kubernetes object validates
// against the Kubernetes schemas (kubernetes-models), the gateway's
// arguments are flags the CLI accepts, and the image runs what the build
// produces. (No Docker engine or cluster here: this is what can be checked.)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const K8S = `${ROOT}deploy/kubernetes/`;
const require = createRequire(import.meta.url);

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec?: Record<string, any>;
}

function objects(): K8sObject[] {
  return readdirSync(K8S)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) =>
      parseAllDocuments(readFileSync(K8S + f, 'utf8')).map((d) => {
        assert.deepEqual(d.errors, [], `${f} parses`);
        return d.toJS() as K8sObject;
      }),
    );
}

/** The kubernetes-models class for an object's apiVersion and kind. */
function model(o: K8sObject): new (data: object) => { validate(): void } {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const folder = group ? `${group}/${version}` : `${version}`;
  const module = require(`kubernetes-models/${folder}/${o.kind}`) as Record<
    string,
    new (
      data: object,
    ) => { validate(): void }
  >;
  const Class = module[o.kind];
  assert.ok(Class, `kubernetes-models knows ${o.apiVersion} ${o.kind}`);
  return Class;
}

it('every Kubernetes object validates against its schema', () => {
  const all = objects();
  assert.deepEqual(all.map((o) => o.kind).sort(), [
    'Deployment',
    'PodDisruptionBudget',
    'Secret',
    'Service',
    'Service',
  ]);
  for (const o of all) {
    const Class = model(o);
    assert.doesNotThrow(() => new Class(o).validate(), `${o.kind} ${o.metadata.name}`);
  }
});

it("the gateway's arguments are flags the CLI accepts, and --replicas matches the Deployment", () => {
  const deployment = objects().find((o) => o.kind === 'Deployment') as K8sObject;
  const container = deployment.spec?.template.spec.containers[0];
  const args = container.args as string[];
  assert.equal(args[0], 'gateway');
  const help = execFileSync(process.execPath, [`${ROOT}packages/gateway/dist/cli/main.js`, 'gateway', '--help'], {
    encoding: 'utf8',
  });
  for (const arg of args.slice(1)) {
    const flag = /^(--[a-z-]+)/.exec(arg)?.[1];
    assert.ok(flag && help.includes(`${flag} `), `${arg}: the gateway documents ${flag}`);
  }
  const replicas = args.find((a) => a.startsWith('--replicas='))?.split('=')[1];
  assert.equal(Number(replicas), deployment.spec?.replicas, '--replicas says what spec.replicas deploys');
  // A stopping pod serves for the drain delay, then lets calls finish for
  // the grace: Kubernetes must not kill it before (SIGKILL at the end of
  // terminationGracePeriodSeconds), with room for the rest of the shutdown.
  const ms = (flag: string) => Number(args.find((a) => a.startsWith(`${flag}=`))?.split('=')[1]);
  const stopping = ms('--drain-delay') + ms('--grace');
  assert.ok(Number.isFinite(stopping), 'the manifest sets --drain-delay and --grace');
  const killAfter = deployment.spec?.template.spec.terminationGracePeriodSeconds * 1000;
  assert.ok(
    stopping + 5000 <= killAfter,
    `drain delay + grace (${stopping} ms) leave 5 s before the kill at ${killAfter} ms`,
  );
  // Every Service and the budget select the Deployment's pods.
  const labels = deployment.spec?.template.metadata.labels;
  for (const o of objects().filter((x) => x.kind === 'Service' || x.kind === 'PodDisruptionBudget')) {
    const selector = o.kind === 'Service' ? o.spec?.selector : o.spec?.selector.matchLabels;
    for (const [k, v] of Object.entries(selector))
      assert.equal(labels[k], v, `${o.kind} ${o.metadata.name} selects the pods`);
  }
});

it('the image copies what exists and runs the built CLI as a non-root user', () => {
  const dockerfile = readFileSync(`${ROOT}deploy/Dockerfile`, 'utf8');
  assert.match(dockerfile, /^USER node$/m);
  assert.match(dockerfile, /npm prune --omit=dev/);
  for (const m of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const source of (m[1] as string).split(' ')) assert.ok(existsSync(ROOT + source), `COPY ${source} exists`);
  }
  const line = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
  assert.ok(line, 'an ENTRYPOINT in exec form');
  const [program, ...args] = JSON.parse(line) as string[];
  assert.equal(program, 'node');
  const script = args.at(-1) ?? '';
  const entry = script.replace(/^\/app\//, '');
  assert.ok(
    script.startsWith('/app/') && existsSync(ROOT + entry),
    `the entrypoint ${script} is what the build produces`,
  );
  const nodeFlags = args.slice(0, -1);
  assert.ok(nodeFlags.includes('--initial-old-space-size=128'), 'the image gives V8 its heap budget up front');
  // Node accepts those flags: the CLI starts with them.
  const help = execFileSync(process.execPath, [...nodeFlags, ROOT + entry, 'gateway', '--help'], { encoding: 'utf8' });
  assert.match(help, /--listen/);
});
