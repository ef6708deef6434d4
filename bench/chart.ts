// A small SVG bar chart of the tunnel/direct ratios (committed next to
// BENCHMARKS.md). Bars per scenario: forward and reverse tunnels on a
// TunnelConnection (the quick start's), then over a grpc-js client; a line at 1.0x.
interface Row {
  scenario: string;
  transport: string;
  ratio_to_direct?: number;
}

const TRANSPORTS = ['forward-own', 'reverse-own', 'forward', 'reverse'] as const;
const COLORS: Record<string, string> = {
  'forward-own': '#3b6fd4',
  'reverse-own': '#e08a2c',
  forward: '#9db7ea',
  reverse: '#f0c596',
};
const LABELS: Record<string, string> = {
  'forward-own': 'forward',
  'reverse-own': 'reverse',
  forward: 'forward, grpc-js client',
  reverse: 'reverse, grpc-js client',
};

export function ratioChart(runs: Row[], date: string): string {
  const rows = runs.filter((r) => r.ratio_to_direct !== undefined);
  const scenarios = [...new Set(rows.map((r) => r.scenario))];
  const max = Math.max(1.5, ...rows.map((r) => r.ratio_to_direct ?? 0));
  const left = 130;
  const width = 640;
  const barH = 14;
  const groupH = barH * TRANSPORTS.length + 14;
  const top = 40;
  const height = top + scenarios.length * groupH + 56;
  const x = (v: number) => left + (v / max) * (width - left - 60);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14">grpctunnel: throughput through a tunnel / direct grpc-js (same run, ${date.slice(0, 10)})</text>`,
  ];
  scenarios.forEach((scenario, i) => {
    const y0 = top + i * groupH;
    parts.push(`<text x="10" y="${y0 + barH + 4}">${scenario}</text>`);
    TRANSPORTS.forEach((transport, j) => {
      const row = rows.find((r) => r.scenario === scenario && r.transport === transport);
      if (!row) return;
      const v = row.ratio_to_direct ?? 0;
      const y = y0 + j * barH;
      parts.push(
        `<rect x="${left}" y="${y}" width="${(x(v) - left).toFixed(1)}" height="${barH - 2}" fill="${COLORS[transport]}"/>`,
        `<text x="${(x(v) + 4).toFixed(1)}" y="${y + barH - 4}">${v.toFixed(2)}x</text>`,
      );
    });
  });
  const one = x(1).toFixed(1);
  parts.push(
    `<line x1="${one}" y1="${top - 6}" x2="${one}" y2="${height - 50}" stroke="#444" stroke-dasharray="4 3"/>`,
    `<text x="${one}" y="${height - 36}" text-anchor="middle">1.0x = direct</text>`,
    ...TRANSPORTS.map((transport, j) => {
      const lx = 10 + j * 155;
      return `<rect x="${lx}" y="${height - 22}" width="10" height="10" fill="${COLORS[transport]}"/><text x="${lx + 14}" y="${height - 13}">${LABELS[transport]}</text>`;
    }),
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}
