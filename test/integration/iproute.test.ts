// The ip session against the real kernel, in a private namespace: devices
// that do not exist, a bridge deleted and made again under the same name
// (ip caches ifindexes per process), and ip exiting on its own.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { must, repo, TestHost } from '../support/netns.ts';

const script = `
import * as ip from ${JSON.stringify(join(repo, 'src/iproute.ts'))};
const out = [];
const names = async (q) => [...(await ip.observe(q)).links.keys()].sort().join(',');
out.push(await names({ devices: ['nosuch0', 'lo'], portsOf: ['nosuch1'] }));
await ip.apply([{ op: 'add-bridge', name: 'br9', mtu: 1400, group: 7 }, { op: 'up', name: 'br9' }]);
// As a teardown reads: by name and the bridge's ports (a dump), then one group delete.
const first = (await ip.observe({ devices: ['br9'], portsOf: ['br9'] })).links.get('br9');
await ip.apply([{ op: 'delete-group', group: 7 }]);
await ip.apply([{ op: 'add-bridge', name: 'br9', mtu: 1300, group: 7 }, { op: 'up', name: 'br9' }]);
const second = (await ip.observe({ devices: ['br9'] })).links.get('br9');
out.push(String(first.mtu), String(second.mtu), String(second.up));
try {
  await ip.apply([{ op: 'set-master', name: 'nosuch2', master: 'br9' }]);
  out.push('no error');
} catch (err) {
  out.push(err.message);
}
out.push(await names({ devices: ['br9'], portsOf: ['br9'] }));
ip.endSession();
process.stdout.write(JSON.stringify(out));
`;

test('observe and apply through one ip session, across deletes and errors', () => {
  const host = new TestHost('ipsess');
  try {
    const file = join(host.dir, 'session.mts');
    writeFileSync(file, script);
    const out = JSON.parse(must('ip', ['netns', 'exec', host.ns, process.execPath, '--import', 'tsx', file])) as string[];
    assert.is(out[0], 'lo', 'absent devices and ports of an absent bridge are simply not there');
    assert.equal(out.slice(1, 4), ['1400', '1300', 'true'], 'the re-made br9 is read as the new device, not through a stale ifindex');
    assert.match(out[4]!, /^Cannot find device "nosuch2" \(at 'ip link set dev nosuch2 master br9'\)$/);
    assert.is(out[5], 'br9', 'the session still answers after a failed command');
  } finally {
    host.destroy();
  }
});

test.run();
