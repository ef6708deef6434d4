// The grpc-timeout header: an integer of at most 8 digits and a unit.

const UNITS: ReadonlyArray<readonly [string, number]> = [
  ['n', 1e-6],
  ['u', 1e-3],
  ['m', 1],
  ['S', 1000],
  ['M', 60_000],
  ['H', 3_600_000],
];

const MAX_VALUE = 99_999_999;

/**
 * Encodes a remaining time in milliseconds as a grpc-timeout value: the
 * finest unit from `finest` up whose amount, rounded up, fits in eight
 * digits. Calls inside a tunnel start at nanoseconds, as the Go reference
 * writes them, so no precision is lost needlessly; the tunnel RPC on the
 * library's own connection starts at milliseconds, as grpc-js writes the
 * header of its calls.
 */
export function encodeTimeout(ms: number, finest: 'n' | 'm' = 'n'): string {
  const remaining = Math.max(0, ms);
  for (const [unit, msPerUnit] of UNITS.slice(UNITS.findIndex(([u]) => u === finest))) {
    const value = Math.ceil(remaining / msPerUnit);
    if (value <= MAX_VALUE) return `${value}${unit}`;
  }
  return `${MAX_VALUE}H`;
}

/** The whole value, as the gRPC spec writes it. */
const STRICT = /^(\d{1,8})([HMSmun])$/;
/** grpc-js's server reading: unanchored, spaces allowed before the unit. */
const LENIENT = /(\d{1,8})\s*([HMSmun])/;

/**
 * Decodes a grpc-timeout value into milliseconds, or undefined when
 * malformed: strictly for calls inside a tunnel, or as leniently as
 * grpc-js's server reads it (`'grpc-js'`), for a tunnel RPC served without
 * one, so a client sees the same deadline either way.
 */
export function decodeTimeout(value: string, reading: 'strict' | 'grpc-js' = 'strict'): number | undefined {
  const match = (reading === 'strict' ? STRICT : LENIENT).exec(value);
  if (!match) return undefined;
  const unit = UNITS.find(([u]) => u === match[2]);
  return unit ? Number(match[1]) * unit[1] : undefined;
}
