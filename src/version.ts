// vxvirt's own version, for messages that compare it with what wrote a file.
// VXVIRT_VERSION is a build-time constant: scripts/build.mjs defines it as
// package.json's version (or --version's); unbundled (tsx) it does not exist.
declare const VXVIRT_VERSION: string;

export const VERSION: string = typeof VXVIRT_VERSION === 'string' ? VXVIRT_VERSION : 'unbundled';
