// Hot-plug, through virsh with either backend: the bindings have no device API.
import { virshOk, withXmlFile } from './virsh.ts';

/** Hot-plug a device into a running domain (not its persistent definition). */
export async function attachDeviceLive(domain: string, deviceXml: string): Promise<void> {
  await withXmlFile(deviceXml, (path) => virshOk(`hot-plugging into domain ${domain}`, ['attach-device', '--domain', domain, '--file', path, '--live']));
}

/** Hot-unplug a device from a running domain. */
export async function detachDeviceLive(domain: string, deviceXml: string): Promise<void> {
  await withXmlFile(deviceXml, (path) => virshOk(`hot-unplugging from domain ${domain}`, ['detach-device', '--domain', domain, '--file', path, '--live']));
}

/** Change a device of a running domain in place (same MAC). */
export async function updateDeviceLive(domain: string, deviceXml: string): Promise<void> {
  await withXmlFile(deviceXml, (path) => virshOk(`changing a device of domain ${domain}`, ['update-device', '--domain', domain, '--file', path, '--live']));
}
