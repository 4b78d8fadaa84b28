// Many guests starting and stopping at once on one host, as libvirtd runs
// them (test/support/storm.ts). The host lock must make this safe: every
// prepare succeeds, every tap finds its bridge (with the VXLAN device on it)
// and keeps it until the guest stops, the guest stays recorded while it runs,
// and when the last guest is gone nothing is left: no devices, no users, no
// state files.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestHost } from '../support/netns.ts';
import { defineNetworks, emptyTally, leftovers, NETWORKS, storm } from '../support/storm.ts';

const DOMAINS = 48;
const ROUNDS = 3;
const WORKERS = 10;

const it = suite<{ host: TestHost }>('storm');
it.before((ctx) => {
  ctx.host = new TestHost('storm');
  ctx.host.addUnderlay();
});
it.after((ctx) => ctx.host.destroy());

it(`${DOMAINS} guests x ${ROUNDS} rounds on ${NETWORKS.length} networks, ${WORKERS} at a time: no failure, nothing left`, async ({ host }) => {
  defineNetworks(host);
  const tally = emptyTally();
  const started = Date.now();
  await storm(host, DOMAINS, ROUNDS, WORKERS, tally);
  const seconds = (Date.now() - started) / 1000;

  const left = leftovers(host);
  console.log(
    `  storm: ${DOMAINS} guests x ${ROUNDS} rounds, ${WORKERS} workers, ${tally.prepares} prepares, ${tally.attaches} tap plugs, ` +
      `${tally.releases} releases in ${seconds.toFixed(1)} s; ${tally.failures.length} failures, ${left.devices.length} devices, ${left.users.length} users and ${left.stateFiles.length} state files left`,
  );

  const shown = tally.failures.slice(0, 12).join('\n');
  assert.is(tally.failures.length, 0, `every prepare, tap plug and release succeeds, no bridge goes away under a running guest, no running guest loses its user record; failures:\n${shown}`);
  assert.is(tally.prepares, DOMAINS * ROUNDS);
  assert.is(tally.releases, DOMAINS * ROUNDS);
  assert.equal(left.devices, [], 'no vxbr*/vxlan* (or taps) left');
  assert.equal(left.users, [], 'vxvirt status lists no domain');
  assert.not.ok(left.statusSeesDevices, 'status sees no devices');
  assert.equal(left.stateFiles, [], 'no *.json left under the state directory');
});

it.run();
