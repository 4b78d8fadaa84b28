// --help and shell completion of the bundled CLI (dist/cli.js), as installed:
// linked onto PATH as `vxvirt`.
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { repo, sh } from '../support/netns.ts';

const it = suite<{ bin: string }>('help and completion');
it.before((ctx) => {
  ctx.bin = mkdtempSync(join(tmpdir(), 'vxvirt-bin-'));
  symlinkSync(join(repo, 'dist/cli.js'), join(ctx.bin, 'vxvirt'));
});
it.after(({ bin }) => rmSync(bin, { recursive: true, force: true }));

// No SHELL: yargs would print a zsh or fish script for those.
const env = (bin: string) => ({ PATH: `${bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: '/root' });
const vxvirt = (bin: string, ...args: string[]) => sh(join(bin, 'vxvirt'), args, '', env(bin));

it('every command has examples in its --help, and every --help points at the exit status table', ({ bin }) => {
  const top = vxvirt(bin, '--help');
  assert.is(top.status, 0);
  const commands = [...top.stdout.matchAll(/^ {2}vxvirt ([a-z-]+)/gm)].map((m) => m[1] as string);
  assert.ok(commands.length >= 11, commands.join(' '));
  for (const c of ['install-hook', 'uninstall-hook', 'check', 'completion']) assert.ok(commands.includes(c), `${c} is listed`);
  const pointer = /Exit status: 0 on success, 1 to 11 by kind of failure: see the table "Exit statuses" in \S+README\.md/;
  assert.match(top.stdout.replace(/\n/g, ' '), pointer);
  for (const c of commands) {
    const r = vxvirt(bin, c, '--help');
    assert.is(r.status, 0, `${c}: ${r.stderr}`);
    const examples = r.stdout.split('\nExamples:\n')[1] ?? '';
    assert.match(examples, new RegExp(`^ {2}(\\S+ .*\\| )?vxvirt ${c}\\b`, 'm'), `${c} --help has an example of ${c}`);
    assert.match(r.stdout.replace(/\n/g, ' '), pointer, `${c} --help points at the exit statuses`);
  }
});

it('vxvirt completion prints a bash script that completes commands and options', ({ bin }) => {
  const r = vxvirt(bin, 'completion');
  assert.is(r.status, 0, r.stderr);
  const script = join(bin, 'completion.bash');
  writeFileSync(script, r.stdout);
  const syntax = sh('bash', ['-n', script], '', env(bin));
  assert.is(syntax.status, 0, syntax.stderr);
  const complete = (...words: string[]) => {
    const cword = words.length - 1;
    const c = sh('bash', ['-c', `source "$0"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${cword}; _vxvirt_yargs_completions; printf '%s\\n' "\${COMPREPLY[@]}"`, script], '', env(bin));
    assert.is(c.status, 0, c.stderr);
    return c.stdout.split('\n').filter(Boolean).sort();
  };
  assert.equal(complete('vxvirt', 'in'), ['install-hook']);
  assert.equal(complete('vxvirt', 'un'), ['undefine-network', 'uninstall-hook']);
  assert.equal(complete('vxvirt', 'check', '--'), ['--frr-pathspace', '--help', '--hooks-dir', '--json']);
  assert.ok(complete('vxvirt', '').includes('define-network'));
  const registered = sh('bash', ['-c', 'source "$0"; complete -p vxvirt', script], '', env(bin));
  assert.match(registered.stdout, /-F _vxvirt_yargs_completions vxvirt$/m);
});

it.run();
