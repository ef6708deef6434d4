// Command-line flags in the style of Go's flag package, which the reference
// programs use: -name or --name, a value after "=" or as the next argument,
// booleans set by their bare name.

/** What a program accepts: each flag's kind and default. */
export type FlagSpec = Record<
  string,
  { kind: 'int' | 'bool' | 'string'; default: number | boolean | string; usage: string }
>;

/** Parsed values by flag name. */
export type Flags<S extends FlagSpec> = { [K in keyof S]: S[K]['default'] };

/** Parses `argv`; throws an Error with a usage line for unknown flags or bad values. */
export function parseFlags<S extends FlagSpec>(spec: S, argv: readonly string[]): Flags<S> {
  const values: Record<string, number | boolean | string> = {};
  for (const [name, flag] of Object.entries(spec)) values[name] = flag.default;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const match = /^--?([^=]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new Error(`unexpected argument ${JSON.stringify(arg)}\n${usage(spec)}`);
    const name = match[1] as string;
    const flag = spec[name];
    if (!flag) throw new Error(`flag provided but not defined: -${name}\n${usage(spec)}`);
    let raw = match[2];
    if (flag.kind === 'bool') {
      if (raw === undefined) values[name] = true;
      else if (/^(1|t|true)$/i.test(raw)) values[name] = true;
      else if (/^(0|f|false)$/i.test(raw)) values[name] = false;
      else throw new Error(`invalid boolean value ${JSON.stringify(raw)} for -${name}\n${usage(spec)}`);
      continue;
    }
    if (raw === undefined) {
      raw = argv[++i];
      if (raw === undefined) throw new Error(`flag needs an argument: -${name}\n${usage(spec)}`);
    }
    if (flag.kind === 'int') {
      if (!/^-?\d+$/.test(raw))
        throw new Error(`invalid value ${JSON.stringify(raw)} for flag -${name}\n${usage(spec)}`);
      values[name] = Number(raw);
    } else values[name] = raw;
  }
  return values as Flags<S>;
}

function usage(spec: FlagSpec): string {
  return Object.entries(spec)
    .map(
      ([name, f]) =>
        `  -${name}${f.kind === 'bool' ? '' : ` ${f.kind}`}\n    \t${f.usage} (default ${JSON.stringify(f.default)})`,
    )
    .join('\n');
}
