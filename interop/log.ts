// Log lines in the format of Go's standard logger ("2006/01/02 15:04:05
// message", on stderr), so that the output of our programs and of the Go
// reference programs reads and greps the same.

const pad = (n: number) => String(n).padStart(2, '0');

/** Writes one log line. */
export function log(message: string): void {
  const d = new Date();
  const stamp = `${d.getFullYear()}/${pad(d.getMonth() + 1)}/${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  process.stderr.write(`${stamp} ${message}\n`);
}

/** Logs the error and exits with status 1, like Go's log.Fatal. */
export function fatal(error: unknown): never {
  log(error instanceof Error ? error.message : String(error));
  process.exit(1);
}
