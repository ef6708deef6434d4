// Who may do what at the gateway: agent tokens bound to the ids they may
// register, caller tokens naming the caller, and the policy saying which
// caller may reach which agents and methods. Pure parsing and matching; the
// gateway wires it to its ports and reloads the policy on SIGHUP.
import { createHash } from 'node:crypto';

/** A glob over names: `*` matches any run of characters, everything else itself. */
export class NamePattern {
  private readonly regex: RegExp;
  constructor(readonly source: string) {
    const escaped = source.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
    this.regex = new RegExp(`^${escaped.join('.*')}$`, 's');
  }
  matches(name: string): boolean {
    return this.regex.test(name);
  }
}

/** Tokens are kept and looked up by digest, so no comparison runs over a secret byte by byte. */
export function digest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The bearer token of an `authorization` value, if it carries one (`Bearer ` with nothing after it carries none). */
export function bearer(authorization: string | undefined): string | undefined {
  return authorization?.startsWith('Bearer ') && authorization.length > 7 ? authorization.slice(7) : undefined;
}

/** One meaningful line of a credentials or policy file, split on whitespace. */
interface Line {
  readonly number: number;
  readonly fields: string[];
}

function lines(text: string): Line[] {
  return text
    .split(/\r?\n/)
    .map((raw, i) => ({ number: i + 1, fields: raw.replace(/#.*/, '').trim().split(/\s+/).filter(Boolean) }))
    .filter((l) => l.fields.length > 0);
}

/** A file that cannot be used, with the place that says why. */
export class AccessFileError extends Error {
  /** Always `'AccessFileError'`. */
  override readonly name = 'AccessFileError';
}

/** Why an agent's tunnel is refused, or undefined when it is admitted. */
export type AgentRefusal = 'no-token' | 'unknown-token' | 'id-not-allowed';

/**
 * The agent tokens a gateway accepts, each bound to the agent ids it may
 * register. File format, one token per line: `TOKEN ID-PATTERN...`, e.g.
 * `k3y-a edge-1 edge-2` or `k3y-b site-*`; `*` alone allows any id.
 */
export class AgentTokens {
  private constructor(private readonly grants: ReadonlyMap<string, readonly NamePattern[]>) {}

  /** Parses a tokens file's text; throws {@link AccessFileError} naming `source` and the line at fault. */
  static parse(text: string, source = 'tokens file'): AgentTokens {
    const grants = new Map<string, NamePattern[]>();
    for (const { number, fields } of lines(text)) {
      const [token, ...ids] = fields as [string, ...string[]];
      if (ids.length === 0) {
        throw new AccessFileError(
          `${source}:${number}: the token needs the agent ids it may register ("TOKEN edge-1", "TOKEN site-*", or "TOKEN *" for any)`,
        );
      }
      const key = digest(token);
      if (grants.has(key)) throw new AccessFileError(`${source}:${number}: this token is listed twice`);
      grants.set(
        key,
        ids.map((id) => new NamePattern(id)),
      );
    }
    // An empty file must not turn into "any agent, no token" (a revoked
    // last token, a half-written file on reload): it is refused.
    if (grants.size === 0) throw new AccessFileError(`${source}: no tokens`);
    return new AgentTokens(grants);
  }

  /** Tokens that may register any id (the gateway's `--token` flag). */
  static anyId(tokens: Iterable<string>): AgentTokens {
    return new AgentTokens(new Map([...tokens].map((t) => [digest(t), [new NamePattern('*')]])));
  }

  /** How many tokens are configured (without one, the gateway admits every agent). */
  get size(): number {
    return this.grants.size;
  }

  /** Whether some token may register every id (worth a warning on a public address). */
  get hasUnboundToken(): boolean {
    return [...this.grants.values()].some((ids) => ids.some((p) => p.source === '*'));
  }

  /** Checks the bearer token a tunnel presented against the id it asks for. */
  check(token: string | undefined, id: string): AgentRefusal | undefined {
    if (!token) return 'no-token';
    const ids = this.grants.get(digest(token));
    if (!ids) return 'unknown-token';
    return ids.some((p) => p.matches(id)) ? undefined : 'id-not-allowed';
  }
}

/**
 * Caller tokens: `TOKEN CALLER-NAME` per line. The name is what the policy,
 * the logs and the metrics know the caller by; the token is never logged.
 */
export class CallerTokens {
  private constructor(private readonly names: ReadonlyMap<string, string>) {}

  /** Parses a caller tokens file's text; `source` names it in errors. Throws {@link AccessFileError}. */
  static parse(text: string, source = 'caller tokens file'): CallerTokens {
    const names = new Map<string, string>();
    for (const { number, fields } of lines(text)) {
      if (fields.length !== 2) {
        throw new AccessFileError(`${source}:${number}: expected "TOKEN CALLER-NAME"`);
      }
      const [token, name] = fields as [string, string];
      const key = digest(token);
      if (names.has(key)) throw new AccessFileError(`${source}:${number}: this token is listed twice`);
      names.set(key, name);
    }
    if (names.size === 0) throw new AccessFileError(`${source}: no tokens`);
    return new CallerTokens(names);
  }

  /** How many tokens the file lists. */
  get size(): number {
    return this.names.size;
  }

  /** The caller a bearer token names, or undefined for a missing or unknown token. */
  identify(token: string | undefined): string | undefined {
    return token ? this.names.get(digest(token)) : undefined;
  }
}

interface Rule {
  readonly callers: NamePattern;
  readonly agents: NamePattern;
  /** `/pkg.Service/` allows that service's methods, `/pkg.Service/Method` that one method; empty allows all. */
  readonly methods: readonly string[];
}

/**
 * Which caller may reach which agents, and optionally which methods. File
 * format, one rule per line: `allow CALLER AGENTS [METHOD...]`, where CALLER
 * and AGENTS are patterns (`*` for any) and each METHOD is a service
 * (`/grpc.health.v1.Health/`, every method of it) or one method
 * (`/example.Greeter/SayHello`, exactly that one: a method name is never a
 * prefix of another's). Anything no rule allows is denied.
 */
export class AccessPolicy {
  private constructor(private readonly rules: readonly Rule[]) {}

  /** The policy when none is configured: every authenticated caller reaches every agent. */
  static allowAll(): AccessPolicy {
    return new AccessPolicy([{ callers: new NamePattern('*'), agents: new NamePattern('*'), methods: [] }]);
  }

  /** Parses a policy file's text; `source` names it in errors. Throws {@link AccessFileError}. */
  static parse(text: string, source = 'policy file'): AccessPolicy {
    const rules: Rule[] = [];
    for (const { number, fields } of lines(text)) {
      const [verb, callers, agents, ...methods] = fields;
      if (verb !== 'allow' || callers === undefined || agents === undefined) {
        throw new AccessFileError(`${source}:${number}: expected "allow CALLER AGENTS [METHOD...]"`);
      }
      const bad = methods.find((m) => !m.startsWith('/'));
      if (bad !== undefined) {
        throw new AccessFileError(`${source}:${number}: method ${JSON.stringify(bad)} must start with "/"`);
      }
      rules.push({ callers: new NamePattern(callers), agents: new NamePattern(agents), methods });
    }
    return new AccessPolicy(rules);
  }

  /** Number of rules (0 denies everything). */
  get size(): number {
    return this.rules.length;
  }

  /** Whether `caller` may call `method` (a `/pkg.Service/Method` path) on `agent`. */
  allows(caller: string, agent: string, method: string): boolean {
    return this.rules.some(
      (r) =>
        r.callers.matches(caller) &&
        r.agents.matches(agent) &&
        (r.methods.length === 0 || r.methods.some((m) => (m.endsWith('/') ? method.startsWith(m) : method === m))),
    );
  }
}
