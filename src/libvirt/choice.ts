// Which way vxvirt talks to libvirt about domains, and how to say it. Pure.
//
// VXVIRT_LIBVIRT=auto (or unset): the bindings @unraid/libvirt when they
// load, else virsh; =virsh: always virsh (tests, and operators who want one
// code path); =bindings: the bindings or exit 9 (tests of the bindings).
import { UsageError } from '../errors.ts';

export const BACKEND_ENV = 'VXVIRT_LIBVIRT';
export const BINDINGS_NAME = '@unraid/libvirt';
export type Setting = 'auto' | 'bindings' | 'virsh';
const SETTINGS: readonly Setting[] = ['auto', 'bindings', 'virsh'];

export function parseSetting(raw: string | undefined): Setting {
  if (raw === undefined || raw === '') return 'auto';
  if ((SETTINGS as readonly string[]).includes(raw)) return raw as Setting;
  throw new UsageError(`${BACKEND_ENV}=${JSON.stringify(raw).slice(0, 70)}: must be auto, bindings or virsh`);
}

export interface Access {
  setting: Setting;
  backend: 'bindings' | 'virsh';
  /** Why the bindings are not used (setting auto, backend virsh): their load error, one line. */
  bindingsError?: string;
}

/** One line for `vxvirt check`: the backend in use and why. */
export function describeAccess(a: Access): string {
  if (a.backend === 'bindings') {
    return `bindings ${BINDINGS_NAME} for domains${a.setting === 'bindings' ? ` (${BACKEND_ENV}=bindings)` : ''}; virsh for libvirt networks and hot-plug`;
  }
  if (a.setting === 'virsh') return `virsh (${BACKEND_ENV}=virsh)`;
  return `virsh (the bindings ${BINDINGS_NAME} did not load: ${a.bindingsError ?? 'no reason given'})`;
}
