// Named points where the crash-safety tests kill the hook (SIGKILL), to prove
// that whatever step a hook dies at, the next run converges; and where the
// race tests pause it (SIGSTOP, until the test sends SIGCONT), to force
// another hook to run at exactly that moment.
//
// VXVIRT_CRASH_POINTS is a build-time constant: `npm run build` defines it as
// false, so in dist/ the body below is dead code that esbuild removes — no
// environment variable can make a production hook kill or stop itself. Only
// the test bundle (test/support/crash-bundle.ts) defines it as true.
// Unbundled (tsx), the identifier does not exist and `typeof` keeps this a no-op.
declare const VXVIRT_CRASH_POINTS: boolean;

export function crashPoint(name: string): void {
  if (typeof VXVIRT_CRASH_POINTS !== 'undefined' && VXVIRT_CRASH_POINTS) {
    if (process.env.VXVIRT_CRASH_AT === name) process.kill(process.pid, 'SIGKILL');
    if (process.env.VXVIRT_PAUSE_AT === name) process.kill(process.pid, 'SIGSTOP');
  }
}

/**
 * A crash or pause point in a process the hook hands work to (a shell
 * script, which does not read these variables itself): the line the script
 * runs there — it kills (SIGKILL) or stops (SIGSTOP) itself — or nothing.
 */
export function crashPointInChild(name: string): string {
  if (typeof VXVIRT_CRASH_POINTS !== 'undefined' && VXVIRT_CRASH_POINTS) {
    if (process.env.VXVIRT_CRASH_AT === name) return 'kill -KILL $$\n';
    if (process.env.VXVIRT_PAUSE_AT === name) return 'kill -STOP $$\n';
  }
  return '';
}
