import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cutItems } from '../../src/iproute.ts';

test('JSON answers of ip -batch are cut apart, brackets inside strings included', () => {
  const a = '[{"ifname":"vxbr42","ifalias":"odd ] [ alias \\" ]"}]';
  const b = '[{"ifname":"lo","flags":["LOOPBACK","UP"]}]';
  assert.equal(cutItems(`${a}${b}`).items, [a, b]);
  assert.equal(cutItems(`${a}\n${b}\n`).items, [a, b]);
  assert.equal(cutItems('[]').items, ['[]']);
  assert.equal(cutItems(`${a}[{"ifname":"cut`), { items: [a], rest: '[{"ifname":"cut' }, 'an incomplete answer is not returned');
  assert.equal(JSON.parse(cutItems(`${a}${b}`).items[0]!), JSON.parse(a));
});

test('error text comes out in whole lines, in order with the answers', () => {
  const b = '[{"ifname":"lo"}]';
  assert.equal(cutItems(`Device "x" does not exist.\nCommand failed -:1\n${b}Device "vxvirt/end" does`), {
    items: ['Device "x" does not exist.', 'Command failed -:1', b],
    rest: 'Device "vxvirt/end" does',
  });
});

test.run();
