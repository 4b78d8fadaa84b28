// Named points where the crash-safety tests kill the hook (SIGKILL), to prove
// that whatever step a hook dies at, the next run converges.
//
// VXVIRT_CRASH_POINTS is a build-time constant: `npm run build` defines it as
// false, so in dist/ the body below is dead code that esbuild removes — no
// environment variable can make a production hook kill itself. Only the test
// bundle that test/integration/crash.test.ts builds defines it as true.
// Unbundled (tsx), the identifier does not exist and `typeof` keeps this a no-op.
declare const VXVIRT_CRASH_POINTS: boolean;

export function crashPoint(name: string): void {
  if (typeof VXVIRT_CRASH_POINTS !== 'undefined' && VXVIRT_CRASH_POINTS && process.env.VXVIRT_CRASH_AT === name) {
    process.kill(process.pid, 'SIGKILL');
  }
}
