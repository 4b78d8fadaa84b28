// vxvirt lab command line:  node --import tsx test/lab/cli.ts COMMAND
//   up [--hosts N] [--modular]
//                    bring up N simulated hosts (default 2) and leave them running;
//                    --modular: virtqemud + virtnetworkd instead of libvirtd
//   status           list labs and their hosts
//   down [--all]     remove labs left behind (interrupted runs, `up`); --all also
//                    removes labs whose test run is still going
//   proof            harness self-test with hand-made bridge+vxlan (no vxvirt)
//   demo             the README tutorial on two hosts, one line per step
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, reapAll, STATE_ROOT, DAEMON_ENV } from './lab.ts';
import { runProof } from './proof.ts';
import { runDemo } from './demo.ts';

const log = (line: string) => console.log(`[lab] ${line}`);

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'up': {
      const i = rest.indexOf('--hosts');
      const n = i >= 0 ? Number(rest[i + 1]) : 2;
      if (!Number.isInteger(n) || n < 1 || n > 20) throw new Error('--hosts must be 1..20');
      const lab = await Lab.create({ name: 'manual', hosts: n, log, daemons: rest.includes('--modular') ? 'modular' : 'monolithic' });
      lab.detach();
      console.log(`lab ${lab.id} is up; state in ${lab.dir}`);
      for (const h of lab.hosts) {
        console.log(
          `  ${h.name}: ${h.ip} on ${'ens47f1'}  enter: nsenter -t ${h.holderPid} -m -n -- env -i ${Object.entries(DAEMON_ENV)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')} bash`,
        );
      }
      console.log(`guest image: kernel ${lab.image.kernel} initrd ${lab.image.initrd}`);
      console.log('remove with: node --import tsx test/lab/cli.ts down');
      return 0;
    }
    case 'status': {
      if (!existsSync(STATE_ROOT) || readdirSync(STATE_ROOT).length === 0) {
        console.log('no lab');
        return 0;
      }
      for (const id of readdirSync(STATE_ROOT)) {
        const f = join(STATE_ROOT, id, 'state.json');
        console.log(existsSync(f) ? readFileSync(f, 'utf8').trim() : `${id}: (no state.json)`);
      }
      return 0;
    }
    case 'down': {
      const n = reapAll(log, { all: rest.includes('--all') });
      console.log(n ? `removed ${n} lab(s)` : 'nothing to remove');
      return 0;
    }
    case 'proof': {
      const r = await runProof(log);
      console.log(`proof passed: ${r.ok} ping answers across the underlay, ${(r.ms / 1000).toFixed(1)} s`);
      return 0;
    }
    case 'demo':
      return runDemo();
    default:
      console.error('usage: node --import tsx test/lab/cli.ts up [--hosts N] [--modular] | status | down [--all] | proof | demo');
      return 2;
  }
}

// Only as a program: the test runner imports every file under test/lab.
const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
