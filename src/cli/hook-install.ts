// install-hook, uninstall-hook: options in, messages out (the change is
// src/hook-install.ts's changeHooks).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { warn } from '../errors.ts';
import { changeHooks, DEFAULT_HOOKS_DIR, planInstall, planUninstall, vxvirtHook } from '../hook-install.ts';
import { single } from './options.ts';

interface Args {
  hooksDir?: unknown;
}

export const hooksDirOption = <T>(y: Argv<T>) =>
  y.option('hooks-dir', { type: 'string', describe: `libvirt's hook directory (default ${DEFAULT_HOOKS_DIR})` }) as unknown as Argv<T & Args>;

export const hooksDir = (argv: Args): string => single('hooks-dir', argv.hooksDir) || DEFAULT_HOOKS_DIR;

const print = (lines: string[]): void => void process.stdout.write(lines.map((m) => `${m}\n`).join(''));

export const installHook: CommandModule<object, Args> = {
  command: 'install-hook',
  describe: "Install vxvirt's libvirt hooks: links to this checkout's hooks/qemu and hooks/network as qemu and network (or KIND.d/vxvirt beside another hook)",
  builder: (y: Argv) =>
    hooksDirOption(y)
      .example('$0 install-hook', `link ${DEFAULT_HOOKS_DIR}/qemu and /network (or qemu.d/vxvirt, network.d/vxvirt) to this checkout's hooks/`)
      .example('$0 install-hook --hooks-dir /usr/local/etc/libvirt/hooks', 'for a libvirt built from source'),
  handler: (argv: ArgumentsCamelCase<Args>) => {
    const checkout = dirname(dirname(vxvirtHook()));
    for (const b of ['hook.js', 'network-hook.js']) {
      const bundle = join(checkout, 'dist', b);
      if (!existsSync(bundle)) warn(`${bundle} is missing: run 'npm ci && npm run build' in ${checkout}, or the hooks cannot start guests on vxvirt networks`);
    }
    print(changeHooks(planInstall, hooksDir(argv)));
  },
};

export const uninstallHook: CommandModule<object, Args> = {
  command: 'uninstall-hook',
  describe: "Remove vxvirt's libvirt hooks (qemu and network); other hooks stay",
  builder: (y: Argv) =>
    hooksDirOption(y).example('$0 uninstall-hook', `remove vxvirt's links from ${DEFAULT_HOOKS_DIR} (qemu, network, or KIND.d/vxvirt)`),
  handler: (argv: ArgumentsCamelCase<Args>) => {
    print(changeHooks((d) => planUninstall(d), hooksDir(argv)));
  },
};
