// One-line logs with a level filter, for the gateway and the agent.

/** Log levels, most verbose first. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
/** A log level, from the most verbose: `debug`, `info`, `warn`, `error`. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Writes log lines at or above a level. */
export interface Logger {
  /** Detail for finding a fault (every dial, every refusal). */
  debug(message: string): void;
  /** Lifecycle: listening, agents arriving and leaving. */
  info(message: string): void;
  /** Something an operator should look at; peers' faults, rate-limited. */
  warn(message: string): void;
  /** The gateway itself failed. */
  error(message: string): void;
}

/** A logger that writes `time level message` lines to `write` (stderr by default). */
export function createLogger(level: LogLevel, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const at = (l: LogLevel) => (message: string) => {
    if (LOG_LEVELS.indexOf(l) >= min) write(`${new Date().toISOString()} ${l.toUpperCase().padEnd(5)} ${message}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A logger that drops everything (library use, tests). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
