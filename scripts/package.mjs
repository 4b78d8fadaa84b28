#!/usr/bin/env node
// Builds the Debian package vxvirt_VERSION_all.deb in the repository's root:
//   npm run package [-- --version 0.1.1] [-- --out DIR]
// from a fresh `npm run build`, with dpkg-deb only (no debhelper, no network).
// VERSION is package.json's with Debian revision 1 (0.1.0-1) unless --version
// gives another (an upgrade test builds two). Layout, after Debian policy (the FHS: a program's private
// files under /usr/lib/PACKAGE, documentation under /usr/share/doc/PACKAGE):
//
//   /usr/lib/vxvirt/package.json     name and "type": "module" (node reads dist/*.js as ESM by it;
//                                    install-hook knows a vxvirt hook by it)
//   /usr/lib/vxvirt/dist/*.js        the bundles: CLI, qemu hook, network hook
//   /usr/lib/vxvirt/hooks/{qemu,network}  what /etc/libvirt/hooks/ links to; each finds
//                                    ../dist/ through the link, as in a checkout
//   /usr/lib/vxvirt/templates/       the generator's templates
//   /usr/bin/vxvirt -> ../lib/vxvirt/dist/cli.js
//   /usr/share/bash-completion/completions/vxvirt   `vxvirt completion`
//   /usr/share/man/man1/vxvirt.1.gz  the --help texts
//   /usr/share/doc/vxvirt/           README, INSTALL, BENCHMARKS, copyright, changelog.Debian.gz
//   /etc/vxvirt/                     the definitions' directory (networks/ is made by define-network)
//
// The maintainer scripts are packaging/deb/{postinst,prerm,postrm}; license texts packaging/deb/licenses/.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync, constants as zlib } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const version = option('version') ?? `${pkg.version}-1`;
const out = option('out') ?? root;
if (!/^[0-9][A-Za-z0-9.+~-]*$/.test(version)) {
  console.error(`package: --version ${JSON.stringify(version)}: a Debian version starts with a digit and has only letters, digits and . + ~ -`);
  process.exit(2);
}

const MAINTAINER = 'vxvirt maintainers <maintainers@users.noreply.r-seed-e4f8f13d.example>';
const run = (cmd, argv, opts = {}) => execFileSync(cmd, argv, { cwd: root, encoding: 'utf8', ...opts });

/** git's answer, or undefined where there is no git or no repository (a source tarball). */
const git = (argv) => {
  try {
    return run('git', argv, { stdio: ['ignore', 'pipe', 'ignore'] }).trim() || undefined;
  } catch {
    return undefined;
  }
};
// The commit's time, so that the same commit builds the same package; without
// git, package.json's (the version's) time.
const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? git(['log', '-1', '--format=%ct']) ?? Math.floor(statSync(join(root, 'package.json')).mtimeMs / 1000));
const commit = git(['rev-parse', '--short', 'HEAD']);

const stage = mkdtempSync(join(tmpdir(), 'vxvirt-deb-'));
chmodSync(stage, 0o755); // it becomes the package's /
try {
  const metafile = join(stage, '..', `${stage.split('/').pop()}.meta.json`);
  run('node', [join(root, 'scripts/build.mjs'), '--metafile', metafile], { stdio: 'inherit' });
  const bundled = bundledPackages(JSON.parse(readFileSync(metafile, 'utf8')));
  rmSync(metafile);

  const at = (p) => join(stage, p);
  const dir = (p) => mkdirSync(at(p), { recursive: true, mode: 0o755 });
  const put = (p, content, mode = 0o644) => {
    dir(dirname(p));
    writeFileSync(at(p), content);
    chmodSync(at(p), mode);
  };
  const copy = (from, p, mode = 0o644) => put(p, readFileSync(join(root, from)), mode);
  const gz = (buf) => gzipSync(buf, { level: zlib.Z_BEST_COMPRESSION }); // no name, no time: gzip -9n

  // ---- the program -----------------------------------------------------------
  const lib = 'usr/lib/vxvirt';
  put(`${lib}/package.json`, `${JSON.stringify({ name: pkg.name, version: pkg.version, description: pkg.description, type: 'module', license: pkg.license, private: true }, null, 2)}\n`);
  copy('dist/cli.js', `${lib}/dist/cli.js`, 0o755);
  copy('dist/hook.cjs', `${lib}/dist/hook.cjs`);
  copy('dist/network-hook.cjs', `${lib}/dist/network-hook.cjs`);
  for (const kind of ['qemu', 'network']) copy(`hooks/${kind}`, `${lib}/hooks/${kind}`, 0o755);
  for (const t of readdirSync(join(root, 'templates'))) copy(`templates/${t}`, `${lib}/templates/${t}`);
  dir('usr/bin');
  symlinkSync('../lib/vxvirt/dist/cli.js', at('usr/bin/vxvirt'));
  dir('etc/vxvirt');

  // ---- completion and manual page, from the CLI itself -------------------------
  // No SHELL: yargs prints the bash script (zsh's when SHELL is zsh).
  // --help names the README it runs beside: the installed one's is the package's.
  const cliEnv = { PATH: process.env.PATH, HOME: '/nonexistent', LC_ALL: 'C' };
  const cli = (...argv) =>
    run(process.execPath, [join(root, 'dist/cli.js'), ...argv], { env: cliEnv }).replaceAll(join(root, 'README.md'), '/usr/share/doc/vxvirt/README.md.gz');
  put('usr/share/bash-completion/completions/vxvirt', cli('completion'));
  put('usr/share/man/man1/vxvirt.1.gz', gz(Buffer.from(manPage(cli))));

  // ---- documentation -----------------------------------------------------------
  const doc = 'usr/share/doc/vxvirt';
  for (const f of ['README.md', 'INSTALL.md', 'BENCHMARKS.md']) put(`${doc}/${f}.gz`, gz(readFileSync(join(root, f))));
  put(`${doc}/copyright`, copyright(bundled));
  put(`${doc}/changelog.Debian.gz`, gz(Buffer.from(changelog())));

  // ---- control -----------------------------------------------------------------
  const installedKiB = Math.ceil(Number(run('du', ['-s', '--apparent-size', '--block-size=1024', stage]).split('\t')[0]));
  dir('DEBIAN');
  put(
    'DEBIAN/control',
    [
      'Package: vxvirt',
      `Version: ${version}`,
      'Architecture: all',
      `Maintainer: ${MAINTAINER}`,
      `Installed-Size: ${installedKiB}`,
      // util-linux (flock, unshare) is Essential: every Debian system has it.
      'Depends: nodejs (>= 18.19), iproute2',
      // The hook runs inside libvirt's daemon; the CLI talks to libvirt through virsh.
      'Recommends: libvirt-daemon-system, libvirt-clients',
      'Section: admin',
      'Priority: optional',
      'Description: per-VNI bridge and VXLAN networks for libvirt/KVM guests',
      ' vxvirt gives libvirt/KVM guests on many hosts one layer-2 network over',
      ' VXLAN. A network is defined by its VNI, underlay device and flooding',
      ' (a remote host, a multicast group, unicast peers, or BGP EVPN through',
      ' FRR), in one definition that is right on every host (vxvirt apply); the',
      " libvirt qemu hook creates the network's bridge and VXLAN device when the",
      ' first guest using it starts and deletes them when the last one stops.',
      ' .',
      ' The package installs the hooks into /etc/libvirt/hooks (beside a hook the',
      ' host already has, through qemu.d/), and the vxvirt command: define-network,',
      ' apply, attach, status, reconcile, check and frr-config.',
      '',
    ].join('\n'),
  );
  for (const s of ['postinst', 'prerm', 'postrm']) copy(`packaging/deb/${s}`, `DEBIAN/${s}`, 0o755);
  // md5sums of every file (not links, not DEBIAN/), as dpkg --verify reads them.
  const sums = [];
  const walk = (d) => {
    for (const e of readdirSync(at(d), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = d ? `${d}/${e.name}` : e.name;
      if (p === 'DEBIAN') continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) sums.push(`${run('md5sum', [at(p)]).split(' ')[0]}  ${p}`);
    }
  };
  walk('');
  put('DEBIAN/md5sums', `${sums.join('\n')}\n`);

  // Every file's time is the commit's (reproducible); dpkg-deb clamps to SOURCE_DATE_EPOCH too.
  run('find', [stage, '-exec', 'touch', '--no-dereference', '--date', `@${epoch}`, '{}', '+']);
  mkdirSync(out, { recursive: true });
  const deb = join(out, `vxvirt_${version}_all.deb`);
  run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) }, stdio: ['ignore', 'ignore', 'inherit'] });
  console.log(`${relative(process.cwd(), deb) || deb} (${statSync(deb).size} bytes, installed ${installedKiB} KiB, from ${commit ?? 'a source tree without git'})`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}

/** A manual page: each command's --help, verbatim, under a few roff headers. */
function manPage(cli) {
  const esc = (text) =>
    text
      .split('\n')
      .map((l) => l.replace(/\\/g, '\\e').replace(/^([.'])/, '\\&$1'))
      .join('\n');
  const top = cli('--help');
  const commands = [...top.matchAll(/^ {2}vxvirt ([a-z-]+)/gm)].map((m) => m[1]);
  const date = new Date(epoch * 1000).toISOString().slice(0, 10);
  const parts = [
    `.TH VXVIRT 1 "${date}" "vxvirt ${version}" "User Commands"`,
    '.SH NAME',
    'vxvirt \\- per-VNI bridge and VXLAN networks for libvirt/KVM guests',
    '.SH SYNOPSIS',
    '.B vxvirt',
    '.I command',
    '[\\fIoptions\\fR]',
    '.SH DESCRIPTION',
    '.nf',
    esc(top.trimEnd()),
    '.fi',
    '.SH COMMANDS',
  ];
  for (const c of commands) parts.push(`.SS ${c}`, '.nf', esc(cli(c, '--help').trimEnd()), '.fi');
  parts.push(
    '.SH FILES',
    '.TP',
    '.I /etc/vxvirt/networks/NAME.json',
    'network definitions',
    '.TP',
    '.I /run/vxvirt',
    "the hook's state and host lock",
    '.TP',
    '.I /etc/libvirt/hooks/qemu, /etc/libvirt/hooks/network',
    "vxvirt's hooks (or qemu.d/vxvirt, network.d/vxvirt)",
    '.SH SEE ALSO',
    '.BR virsh (1),',
    '/usr/share/doc/vxvirt/README.md.gz, /usr/share/doc/vxvirt/INSTALL.md.gz',
    '',
  );
  return parts.join('\n');
}

/**
 * copyright, in Debian's machine-readable format: vxvirt's, and those of the
 * npm packages bundled into dist/*.js, from their own LICENSE files.
 */
function copyright(bundled) {
  const field = (name, lines) => [`${name}: ${lines[0]}`, ...lines.slice(1).map((l) => ` ${l}`)].join('\n');
  const text = (lines) => lines.map((l) => (l.trim() === '' ? ' .' : ` ${l}`)).join('\n');
  const licenses = [...new Set(bundled.map((b) => b.license))].sort();
  const known = {
    MIT: text(readFileSync(join(root, 'packaging/deb/licenses/MIT'), 'utf8').trimEnd().split('\n')),
    ISC: text(readFileSync(join(root, 'packaging/deb/licenses/ISC'), 'utf8').trimEnd().split('\n')),
    'Apache-2.0': text(['On Debian systems the full text of the Apache License, Version 2.0 is in', '/usr/share/common-licenses/Apache-2.0.']),
  };
  for (const l of licenses) if (!known[l]) throw new Error(`package: a bundled npm package is under ${l}: add its text to packaging/deb/licenses and scripts/package.mjs`);
  const paragraphs = [
    ['Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/', 'Upstream-Name: vxvirt'].join('\n'),
    ['Files: *', 'Copyright: vxvirt authors', 'License: MIT'].join('\n'),
    [
      'Files: usr/lib/vxvirt/dist/*',
      field('Copyright', ['vxvirt authors', ...new Set(bundled.map((b) => b.copyright))]),
      `License: MIT and ${licenses.filter((l) => l !== 'MIT').join(' and ')}`,
      field('Comment', ['The bundles hold these npm packages:', ...bundled.map((b) => `${b.name} ${b.version} (${b.license})`)]),
    ].join('\n'),
    ...['MIT', ...licenses.filter((l) => l !== 'MIT')].map((l) => `License: ${l}\n${known[l]}`),
  ];
  return `${paragraphs.join('\n\n')}\n`;
}

/** The npm packages esbuild put into the bundles (its metafile): name, version, license, copyright line. */
function bundledPackages(meta) {
  const names = new Set();
  for (const input of Object.keys(meta.inputs)) {
    const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) names.add(m[1]);
  }
  return [...names].sort().map((name) => {
    const dir = join(root, 'node_modules', name);
    const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
    const line = file ? /^Copyright\b.*$/m.exec(readFileSync(join(dir, file), 'utf8'))?.[0] : undefined;
    const author = typeof p.author === 'string' ? p.author : p.author?.name;
    const copyrightLine = (line ?? `${author ?? `the ${name} authors`}`).replace(/^Copyright\s*(\(c\)|©)?\s*/i, '').trim();
    return { name, version: p.version, license: p.license, copyright: copyrightLine };
  });
}

/** changelog.Debian: one entry for this version. */
function changelog() {
  const date = new Date(epoch * 1000).toUTCString().replace(/GMT$/, '+0000'); // RFC 5322, as dpkg wants it
  return [`vxvirt (${version}) unstable; urgency=medium`, '', commit ? `  * Built from vxvirt's source at commit ${commit}.` : "  * Built from vxvirt's source.", '', ` -- ${MAINTAINER}  ${date}`, ''].join('\n');
}
