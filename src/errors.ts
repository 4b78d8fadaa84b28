// Errors are values with an exit status. Only entry points (the CLI's top-level
// handler and the hook) print them and exit; everything else throws.
//
// Exit statuses (documented in README.md):
//   1  internal error (a bug, or something unexpected from the system)
//   2  usage: a bad option or argument
//   3  bad network definition (or one that conflicts with another)
//   4  bad domain XML
//   5  a required tool (ip, bridge, flock, virsh) is missing or failed
//   6  timed out waiting for the host lock
//   7  a kernel device or a file conflicts with vxvirt (exists but was not created by it)
//   8  a named network or domain does not exist
//   9  libvirt refused the operation, or the bindings are missing
//  10  `vxvirt check` found at least one failure (its FAIL lines say which)
//  11  reconcile: the host has not converged (with --dry-run: something to change or to look at)
//  12  a state or definition file is in a newer format than this vxvirt reads (upgrade vxvirt)

export class VxvirtError extends Error {
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class InternalError extends VxvirtError {
  override readonly exitCode = 1;
}
export class UsageError extends VxvirtError {
  override readonly exitCode = 2;
}
export class DefinitionError extends VxvirtError {
  override readonly exitCode = 3;
}
export class DomainXmlError extends VxvirtError {
  override readonly exitCode = 4;
}
export class ToolError extends VxvirtError {
  override readonly exitCode = 5;
}
export class LockTimeoutError extends VxvirtError {
  override readonly exitCode = 6;
}
export class DeviceConflictError extends VxvirtError {
  override readonly exitCode = 7;
}
/** A file in a place vxvirt would write (e.g. a hook) that vxvirt did not put there. */
export class FileConflictError extends VxvirtError {
  override readonly exitCode = 7;
}
export class NotFoundError extends VxvirtError {
  override readonly exitCode = 8;
}
export class LibvirtError extends VxvirtError {
  override readonly exitCode = 9;
}
/** libvirtd could not be reached at all (not running, wrong URI): commands that can finish later say so and go on. */
export class LibvirtUnreachableError extends LibvirtError {}
/** `vxvirt check` ran and found failures: a result for scripts and monitoring, not a crash of the check (1). */
export class CheckFailedError extends VxvirtError {
  override readonly exitCode = 10;
}
/** `vxvirt reconcile` could not converge the host (or, with --dry-run, found something to change). */
export class NotConvergedError extends VxvirtError {
  override readonly exitCode = 11;
}

/**
 * A file written by a newer vxvirt, in a format this one cannot read
 * (formats.ts): never acted on; the way out is to upgrade vxvirt.
 */
export class NewerFormatError extends VxvirtError {
  override readonly exitCode = 12;
}

/** The same kind of error (so the same exit status) with another message; the error itself becomes its cause. */
export function withMessage(err: VxvirtError, message: string): VxvirtError {
  return new (err.constructor as new (m: string, o: { cause?: unknown }) => VxvirtError)(message, { cause: err });
}

/** An error's message on one line: stderr of a hook ends up inside libvirt's error text. */
export function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*\n\s*/g, '; ').trim();
}

/** Print a warning: something the user should know about that did not stop the command. */
export function warn(line: string): void {
  process.stderr.write(`vxvirt: warning: ${line}\n`);
}

/** The one line printed for an error; a stack trace only with VXVIRT_DEBUG=1. */
export function formatError(err: unknown, debug = process.env.VXVIRT_DEBUG === '1'): string {
  if (debug && err instanceof Error && err.stack) return `vxvirt: ${err.stack}`;
  return `vxvirt: ${oneLine(err)}`;
}

export function exitCodeOf(err: unknown): number {
  return err instanceof VxvirtError ? err.exitCode : 1;
}
