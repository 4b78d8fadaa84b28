// The change log as the CLI writes it: to a file, to syslog through logger(1)
// (here a test socket standing in for /dev/log), or nowhere; a log that
// cannot be written never fails the command.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { repo, TestHost, type Result } from '../support/netns.ts';

const it = suite<{ host: TestHost; tmp: string; server?: Server }>('change log');
it.before.each((ctx) => {
  ctx.host = new TestHost();
  ctx.host.addUnderlay();
  ctx.tmp = mkdtempSync(join(tmpdir(), 'vxvirt-log-'));
  const r = ctx.host.vxvirt('define-network', '--no-libvirt', 'uni', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101', '--remote', '192.168.8.102');
  assert.is(r.status, 0, r.stderr);
});
it.after.each((ctx) => {
  ctx.server?.close();
  ctx.host.destroy();
  rmSync(ctx.tmp, { recursive: true, force: true });
});

/** set-peers to a new pair of peers, with the given environment on top of the host's. */
function setPeers(host: TestHost, third: string, env: Record<string, string>): Result {
  return host.exec(process.execPath, [join(repo, 'dist/cli.js'), 'set-peers', 'uni', '--remote', '192.168.8.101', '--remote', third], '', env);
}

it('file: one timestamped line per change, appended', ({ host }) => {
  for (const third of ['192.168.8.103', '192.168.8.104']) assert.is(setPeers(host, third, {}).status, 0);
  const lines = readFileSync(host.env.VXVIRT_LOG_FILE, 'utf8').split('\n').filter(Boolean);
  assert.is(lines.length, 2);
  assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z vxvirt\[\d+\]: network=uni action=peers-changed command=set-peers peers=192\.168\.8\.101,192\.168\.8\.103 added=192\.168\.8\.103 removed=192\.168\.8\.102 live=false$/);
  assert.match(lines[1]!, /added=192\.168\.8\.104 removed=192\.168\.8\.103 live=false$/);
});

it('file: concurrent writers never interleave their lines', async ({ host, tmp }) => {
  const script = join(tmp, 'writer.ts');
  writeFileSync(
    script,
    `import { logChanges } from ${JSON.stringify(join(repo, 'src/log.ts'))};\n` +
      `for (let i = 0; i < 200; i++) logChanges([{ action: 'created', domain: 'w' + process.argv[2] + ' #' + i, network: 'n'.repeat(300) }]);\n`,
  );
  const writers = [1, 2, 3, 4].map(
    (n) =>
      new Promise<number>((resolve) =>
        spawn(process.execPath, ['--import', 'tsx', script, String(n)], { cwd: repo, env: { ...process.env, VXVIRT_LOG_FILE: host.env.VXVIRT_LOG_FILE }, stdio: 'inherit' }).on('close', (c) => resolve(c ?? -1)),
      ),
  );
  assert.equal(await Promise.all(writers), [0, 0, 0, 0]);
  const lines = readFileSync(host.env.VXVIRT_LOG_FILE, 'utf8').split('\n').filter(Boolean);
  assert.is(lines.length, 800);
  for (const l of lines) assert.match(l, /^\S+Z vxvirt\[\d+\]: domain="w\d #\d+" network=n{300} action=created$/);
});

it('an unwritable log is a warning; the change is made and the command succeeds', ({ host }) => {
  const r = setPeers(host, '192.168.8.103', { VXVIRT_LOG_FILE: '/proc/vxvirt/none.log' });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /^vxvirt: warning: cannot write the change log \/proc\/vxvirt\/none\.log: ENOENT\n$/);
  assert.match(r.stdout, /^network uni: peers 192\.168\.8\.101, 192\.168\.8\.103 /);
});

it('VXVIRT_LOG=off: nothing is written', ({ host }) => {
  assert.is(setPeers(host, '192.168.8.103', { VXVIRT_LOG: 'off' }).status, 0);
  assert.not.ok(existsSync(host.env.VXVIRT_LOG_FILE));
});

it('syslog: logger(1) delivers the line to the socket, tagged vxvirt, facility daemon, level info', async (ctx) => {
  const { host, tmp } = ctx;
  const socket = join(tmp, 'dev-log');
  const received: string[] = [];
  // A stream socket: node has no unix datagram sockets, and logger falls back to a stream when a datagram fails.
  ctx.server = createServer((c) => c.setEncoding('utf8').on('data', (d: string) => received.push(d)));
  await new Promise<void>((resolve) => ctx.server!.listen(socket, resolve));
  const r = setPeers(host, '192.168.8.103', { VXVIRT_LOG_FILE: '', VXVIRT_SYSLOG_SOCKET: socket });
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, '');
  // logger runs detached, after the command may have exited.
  const deadline = Date.now() + 10_000;
  while (!received.join('').includes('\n') && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  const text = received.join('');
  // <30> = facility daemon (3) * 8 + level info (6).
  assert.match(text, /^<30>\w{3} [ \d]\d \d\d:\d\d:\d\d vxvirt\[\d+\]: network=uni action=peers-changed command=set-peers peers=192\.168\.8\.101,192\.168\.8\.103 added=192\.168\.8\.103 removed=192\.168\.8\.102 live=false\n$/);
  assert.not.ok(existsSync(host.env.VXVIRT_LOG_FILE), 'nothing in the file');
});

it.run();
