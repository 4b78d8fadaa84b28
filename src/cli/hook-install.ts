// install-hook, uninstall-hook.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { warn } from '../errors.ts';
import { applySteps, DEFAULT_HOOKS_DIR, inspectHooksDir, planInstall, planUninstall, vxvirtHook, type HookPlan } from '../hook-install.ts';
import { single } from './options.ts';

interface Args {
  hooksDir?: unknown;
}

export const hooksDirOption = <T>(y: Argv<T>) =>
  y.option('hooks-dir', { type: 'string', describe: `libvirt's hook directory (default ${DEFAULT_HOOKS_DIR})` }) as unknown as Argv<T & Args>;

export const hooksDir = (argv: Args): string => single('hooks-dir', argv.hooksDir) || DEFAULT_HOOKS_DIR;

function carryOut(plan: HookPlan): void {
  applySteps(plan.steps);
  process.stdout.write(plan.messages.map((m) => `${m}\n`).join(''));
}

export const installHook: CommandModule<object, Args> = {
  command: 'install-hook',
  describe: "Install vxvirt's libvirt hook: a link to this checkout's hooks/qemu as qemu (or qemu.d/vxvirt beside another hook)",
  builder: (y: Argv) =>
    hooksDirOption(y)
      .example('$0 install-hook', `link ${DEFAULT_HOOKS_DIR}/qemu (or qemu.d/vxvirt) to this checkout's hooks/qemu`)
      .example('$0 install-hook --hooks-dir /usr/local/etc/libvirt/hooks', 'for a libvirt built from source'),
  handler: (argv: ArgumentsCamelCase<Args>) => {
    const hook = vxvirtHook();
    const bundle = join(dirname(dirname(hook)), 'dist', 'hook.js');
    if (!existsSync(bundle)) warn(`${bundle} is missing: run 'npm ci && npm run build' in ${dirname(dirname(hook))}, or the hook cannot start guests on vxvirt networks`);
    carryOut(planInstall(inspectHooksDir(hooksDir(argv), hook), hook));
  },
};

export const uninstallHook: CommandModule<object, Args> = {
  command: 'uninstall-hook',
  describe: "Remove vxvirt's libvirt hook; other hooks stay",
  builder: (y: Argv) =>
    hooksDirOption(y).example('$0 uninstall-hook', `remove vxvirt's link from ${DEFAULT_HOOKS_DIR} (qemu or qemu.d/vxvirt)`),
  handler: (argv: ArgumentsCamelCase<Args>) => {
    carryOut(planUninstall(inspectHooksDir(hooksDir(argv), vxvirtHook())));
  },
};
