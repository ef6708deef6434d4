// Test certificates, made fresh with openssl for each run: a CA, a server
// certificate for 127.0.0.1/localhost, and client certificates.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface KeyPair {
  key: Buffer;
  cert: Buffer;
}

export interface TestPki {
  ca: Buffer;
  server: KeyPair;
  /** Client certificates by common name. */
  clients: Record<string, KeyPair>;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/**
 * Makes a CA, a server certificate and one client certificate per name. The
 * server certificate is for 127.0.0.1 and localhost unless `serverNames`
 * (an openssl subjectAltName list) says otherwise.
 */
export function makePki(clientNames: string[], serverNames = 'IP:127.0.0.1,DNS:localhost'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'grpctunnel-pki-'));
  const at = (f: string) => join(dir, f);
  const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  try {
    openssl([
      'req',
      '-x509',
      ...EC,
      '-keyout',
      at('ca.key'),
      '-out',
      at('ca.crt'),
      '-subj',
      '/CN=test-ca',
      '-days',
      '2',
    ]);
    const issue = (name: string, ext: string) => {
      writeFileSync(at(`${name}.ext`), ext);
      openssl(['req', ...EC, '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`), '-subj', `/CN=${name}`]);
      openssl([
        'x509',
        '-req',
        '-in',
        at(`${name}.csr`),
        '-CA',
        at('ca.crt'),
        '-CAkey',
        at('ca.key'),
        '-CAcreateserial',
        '-out',
        at(`${name}.crt`),
        '-days',
        '2',
        '-extfile',
        at(`${name}.ext`),
      ]);
      return { key: readFileSync(at(`${name}.key`)), cert: readFileSync(at(`${name}.crt`)) };
    };
    const server = issue('localhost', `subjectAltName=${serverNames}\nextendedKeyUsage=serverAuth\n`);
    const clients: Record<string, KeyPair> = {};
    for (const name of clientNames) clients[name] = issue(name, 'extendedKeyUsage=clientAuth\n');
    return { ca: readFileSync(at('ca.crt')), server, clients };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
