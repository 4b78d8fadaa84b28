// The lab's guest image: Debian's cloud kernel plus an initramfs made of static
// busybox, the virtio-net modules and test/lab/guest/init. Built once and
// cached (outside the repository) under $VXLAB_CACHE_DIR, default
// /var/cache/vxvirt-lab/<kernel package>/, so later runs only hash a few files.
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './exec.ts';

export const CACHE_ROOT = process.env.VXLAB_CACHE_DIR ?? '/var/cache/vxvirt-lab';
const GUEST_DIR = join(dirname(fileURLToPath(import.meta.url)), 'guest');
/** The metapackage whose dependency names the current cloud kernel. */
const KERNEL_META = 'linux-image-cloud-amd64';
/** Insertion order measured on Debian 12's cloud kernel; evdev + button serve `virsh shutdown`. */
export const GUEST_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
  'evdev',
  'button',
];

export interface GuestImage {
  kernel: string;
  initrd: string;
  kernelPackage: string;
  /** True when nothing had to be downloaded or built. */
  cached: boolean;
}

type Log = (line: string) => void;

async function kernelPackage(log: Log): Promise<string> {
  const pick = async () => {
    const r = await run(['apt-cache', 'depends', KERNEL_META]);
    return /Depends:\s+(linux-image-\S+)/.exec(r.stdout)?.[1];
  };
  let pkg = await pick();
  if (!pkg) {
    log(`apt-cache knows no ${KERNEL_META}: running apt-get update`);
    await run(['apt-get', 'update', '-q'], { check: true, timeoutMs: 300_000 });
    pkg = await pick();
  }
  if (!pkg) throw new Error(`cannot tell which kernel package ${KERNEL_META} depends on`);
  return pkg;
}

function findModule(root: string, name: string): string | undefined {
  const want = new RegExp(`^${name.replace(/_/g, '[_-]')}\\.ko(\\.xz|\\.zst|\\.gz)?$`);
  const stack = [root];
  while (stack.length) {
    const dir = stack.pop()!;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (want.test(e.name)) return p;
    }
  }
  return undefined;
}

async function fetchKernel(pkg: string, dest: string, log: Log): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'vxlab-kernel-'));
  try {
    log(`downloading ${pkg} (apt-get download)`);
    const dl = await run(['apt-get', 'download', pkg], { cwd: work, timeoutMs: 600_000 });
    if (dl.code !== 0) {
      await run(['apt-get', 'update', '-q'], { check: true, timeoutMs: 300_000 });
      await run(['apt-get', 'download', pkg], { cwd: work, check: true, timeoutMs: 600_000 });
    }
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb`);
    const x = join(work, 'x');
    await run(['dpkg-deb', '-x', join(work, deb), x], { check: true });
    const vmlinuz = readdirSync(join(x, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Error(`${deb} has no /boot/vmlinuz-*`);
    const staging = `${dest}.tmp-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(join(staging, 'modules'), { recursive: true });
    copyFileSync(join(x, 'boot', vmlinuz), join(staging, 'vmlinuz'));
    const modRoot = join(x, 'lib', 'modules');
    for (const m of GUEST_MODULES) {
      const src = findModule(modRoot, m);
      if (!src) throw new Error(`${deb} has no module ${m}`);
      const out = join(staging, 'modules', `${m}.ko`);
      // busybox insmod takes plain .ko only: decompress here.
      if (src.endsWith('.xz')) await run(['sh', '-c', 'xz -dc "$1" > "$2"', 'sh', src, out], { check: true });
      else if (src.endsWith('.zst')) await run(['sh', '-c', 'zstd -qdc "$1" > "$2"', 'sh', src, out], { check: true });
      else if (src.endsWith('.gz')) await run(['sh', '-c', 'gzip -dc "$1" > "$2"', 'sh', src, out], { check: true });
      else copyFileSync(src, out);
    }
    writeFileSync(join(staging, 'version'), `${basename(vmlinuz).replace(/^vmlinuz-/, '')}\n`);
    rmSync(dest, { recursive: true, force: true });
    renameSync(staging, dest);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function busyboxPath(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) if (existsSync(p)) return p;
  throw new Error('busybox not found (apt-get install busybox-static)');
}

async function buildInitrd(kdir: string, out: string): Promise<void> {
  const stage = mkdtempSync(join(tmpdir(), 'vxlab-initrd-'));
  try {
    for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp', 'lib/modules', 'etc/acpi/PWRF', 'var/log']) {
      mkdirSync(join(stage, d), { recursive: true });
    }
    copyFileSync(busyboxPath(), join(stage, 'bin/busybox'));
    chmodSync(join(stage, 'bin/busybox'), 0o755);
    copyFileSync(join(GUEST_DIR, 'init'), join(stage, 'init'));
    chmodSync(join(stage, 'init'), 0o755);
    copyFileSync(join(GUEST_DIR, 'power-button'), join(stage, 'etc/acpi/PWRF/00000080'));
    chmodSync(join(stage, 'etc/acpi/PWRF/00000080'), 0o755);
    for (const m of GUEST_MODULES) copyFileSync(join(kdir, 'modules', `${m}.ko`), join(stage, 'lib/modules', `${m}.ko`));
    writeFileSync(join(stage, 'lib/modules/order'), GUEST_MODULES.join('\n') + '\n');
    // The kernel opens /dev/console before /init runs: it must be in the archive.
    await run(['mknod', '-m', '600', join(stage, 'dev/console'), 'c', '5', '1'], { check: true });
    await run(['mknod', '-m', '666', join(stage, 'dev/null'), 'c', '1', '3'], { check: true });
    const tmp = `${out}.tmp-${process.pid}`;
    await run(['sh', '-c', 'cd "$1" && find . -print | cpio -o -H newc -R 0:0 --quiet | gzip -1 > "$2"', 'sh', stage, tmp], {
      check: true,
    });
    renameSync(tmp, out);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** The kernel and initramfs for lab guests, downloading/building them when not cached. */
export async function ensureGuestImage(log: Log = () => {}): Promise<GuestImage> {
  const pkg = await kernelPackage(log);
  const kdir = join(CACHE_ROOT, pkg);
  let cached = true;
  if (!existsSync(join(kdir, 'vmlinuz')) || !GUEST_MODULES.every((m) => existsSync(join(kdir, 'modules', `${m}.ko`)))) {
    cached = false;
    mkdirSync(CACHE_ROOT, { recursive: true });
    await fetchKernel(pkg, kdir, log);
  }
  const h = createHash('sha256');
  for (const f of ['init', 'power-button']) h.update(readFileSync(join(GUEST_DIR, f)));
  h.update(readFileSync(busyboxPath()));
  h.update(GUEST_MODULES.join(','));
  const initrd = join(kdir, `initrd-${h.digest('hex').slice(0, 16)}.img`);
  if (!existsSync(initrd)) {
    cached = false;
    log(`building guest initramfs ${initrd}`);
    await buildInitrd(kdir, initrd);
    // Older builds (another /init) are dropped once nobody could still be booting them.
    for (const f of readdirSync(kdir)) {
      const p = join(kdir, f);
      if (/^initrd-.*\.img$/.test(f) && p !== initrd && Date.now() - statSync(p).mtimeMs > 3_600_000) rmSync(p, { force: true });
    }
  }
  return { kernel: join(kdir, 'vmlinuz'), initrd, kernelPackage: pkg, cached };
}
