import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { splitJsonArrays } from '../../src/iproute.ts';

test('JSON answers of ip -batch are cut apart, brackets inside strings included', () => {
  const a = '[{"ifname":"vxbr42","ifalias":"odd ] [ alias \\" ]"}]';
  const b = '[{"ifname":"lo","flags":["LOOPBACK","UP"]}]';
  assert.equal(splitJsonArrays(`${a}${b}`), [a, b]);
  assert.equal(splitJsonArrays(`${a}\n${b}\n`), [a, b]);
  assert.equal(splitJsonArrays('[]'), ['[]']);
  assert.equal(splitJsonArrays(`${a}[{"ifname":"cut`), [a], 'an incomplete answer is not returned');
  for (const [x, y] of [[splitJsonArrays(`${a}${b}`)[0], a]]) assert.equal(JSON.parse(x!), JSON.parse(y!));
});

test.run();
