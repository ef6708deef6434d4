import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AccessFileError,
  AccessPolicy,
  AgentTokens,
  bearer,
  CallerTokens,
  NamePattern,
} from '#gateway/gateway/access.js';

describe('NamePattern', () => {
  it('matches * as any run of characters and everything else literally', () => {
    const p = new NamePattern('edge-*.eu');
    assert.ok(p.matches('edge-1.eu'));
    assert.ok(p.matches('edge-.eu'));
    assert.ok(!p.matches('edge-1xeu'), 'a dot is not a wildcard');
    assert.ok(!p.matches('xedge-1.eu'), 'anchored at the start');
    assert.ok(!p.matches('edge-1.eu.x'), 'anchored at the end');
    assert.ok(new NamePattern('*').matches(''));
    assert.ok(new NamePattern('a(b)[c]+?').matches('a(b)[c]+?'));
    assert.ok(!new NamePattern('a(b)[c]+?').matches('abc'));
  });
});

describe('AgentTokens', () => {
  const tokens = AgentTokens.parse(
    ['# token     ids', 'k-a  edge-1 edge-2', 'k-site   site-*   # a whole site', '', 'k-any *'].join('\n'),
  );

  it('binds each token to the ids it may register', () => {
    assert.equal(tokens.check('k-a', 'edge-1'), undefined);
    assert.equal(tokens.check('k-a', 'edge-2'), undefined);
    assert.equal(tokens.check('k-a', 'edge-3'), 'id-not-allowed', 'a token for edge-1/2 cannot serve edge-3');
    assert.equal(tokens.check('k-site', 'site-berlin'), undefined);
    assert.equal(tokens.check('k-site', 'edge-1'), 'id-not-allowed');
    assert.equal(tokens.check('k-any', 'anything'), undefined);
    assert.equal(tokens.check('nope', 'edge-1'), 'unknown-token');
    assert.equal(tokens.check(undefined, 'edge-1'), 'no-token');
    assert.equal(tokens.check('', 'edge-1'), 'no-token');
    assert.equal(tokens.size, 3);
    assert.ok(tokens.hasUnboundToken);
    assert.ok(!AgentTokens.parse('k edge-1').hasUnboundToken);
  });

  it('refuses a token without ids and a repeated token, naming the line', () => {
    assert.throws(() => AgentTokens.parse('k-a edge-1\nlonely\n', 'agents.txt'), {
      name: 'AccessFileError',
      message: /^agents\.txt:2: the token needs the agent ids/,
    });
    assert.throws(() => AgentTokens.parse('k edge-1\nk edge-2'), AccessFileError);
    // An empty file would otherwise mean "no tokens configured": any agent, any id.
    assert.throws(() => AgentTokens.parse('# every token revoked\n', 'agents.txt'), {
      message: 'agents.txt: no tokens',
    });
  });

  it('--token tokens may register any id', () => {
    const flag = AgentTokens.anyId(['s3cret']);
    assert.equal(flag.check('s3cret', 'whatever'), undefined);
    assert.equal(flag.check('other', 'whatever'), 'unknown-token');
  });
});

describe('CallerTokens', () => {
  it('names the caller a token belongs to', () => {
    const callers = CallerTokens.parse('t-ci ci-bot\nt-ops ops # on call\n');
    assert.equal(callers.identify('t-ci'), 'ci-bot');
    assert.equal(callers.identify('t-ops'), 'ops');
    assert.equal(callers.identify('t-x'), undefined);
    assert.equal(callers.identify(undefined), undefined);
  });

  it('refuses malformed lines and empty files', () => {
    assert.throws(() => CallerTokens.parse('only-a-token'), { message: /:1: expected "TOKEN CALLER-NAME"/ });
    assert.throws(() => CallerTokens.parse('a b c'), AccessFileError);
    assert.throws(() => CallerTokens.parse('# nothing\n'), { message: /no tokens/ });
    assert.throws(() => CallerTokens.parse('t a\nt b'), { message: /listed twice/ });
  });
});

describe('AccessPolicy', () => {
  const policy = AccessPolicy.parse(
    [
      'allow ci-bot edge-*  /grpc.health.v1.Health/ /example.Greeter/SayHello',
      'allow ops    *',
      'allow team-* site-1',
    ].join('\n'),
  );

  it('allows what a rule allows and denies the rest', () => {
    assert.ok(policy.allows('ci-bot', 'edge-1', '/grpc.health.v1.Health/Check'));
    assert.ok(policy.allows('ci-bot', 'edge-9', '/example.Greeter/SayHello'));
    assert.ok(!policy.allows('ci-bot', 'edge-1', '/example.Greeter/Other'), 'not that method');
    assert.ok(!policy.allows('ci-bot', 'edge-1', '/example.Greeter/SayHellos'), 'a method is not a prefix');
    assert.ok(!policy.allows('ci-bot', 'site-1', '/grpc.health.v1.Health/Check'), 'not that agent');
    assert.ok(policy.allows('ops', 'site-1', '/any.Thing/At'));
    assert.ok(policy.allows('team-a', 'site-1', '/x.Y/Z'));
    assert.ok(!policy.allows('team-a', 'site-2', '/x.Y/Z'));
    assert.ok(!policy.allows('stranger', 'edge-1', '/grpc.health.v1.Health/Check'));
    assert.ok(!AccessPolicy.parse('# deny all\n').allows('ops', 'edge-1', '/x.Y/Z'));
    assert.ok(AccessPolicy.allowAll().allows('anyone', 'any', '/x.Y/Z'));
  });

  it('refuses what it cannot read, naming the line', () => {
    assert.throws(() => AccessPolicy.parse('allow ops\n', 'p'), { message: /^p:1: expected "allow CALLER AGENTS/ });
    assert.throws(() => AccessPolicy.parse('deny ops *'), AccessFileError);
    assert.throws(() => AccessPolicy.parse('\nallow ops * grpc.health.v1.Health/'), {
      message: /^policy file:2: method "grpc.health.v1.Health\/" must start with "\/"$/,
    });
  });
});

it('reads a bearer token the one way every port does: `Bearer ` and at least one character', () => {
  assert.equal(bearer('Bearer abc'), 'abc');
  assert.equal(bearer('Bearer  abc'), ' abc');
  assert.equal(bearer('Bearer '), undefined);
  assert.equal(bearer('Bearer'), undefined);
  assert.equal(bearer('bearer abc'), undefined);
  assert.equal(bearer('Basic abc'), undefined);
  assert.equal(bearer(undefined), undefined);
});
