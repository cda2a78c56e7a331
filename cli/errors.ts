// Errors a user caused: printed as one line, no stack, exit code 2.

export class UsageError extends Error {
  override name = 'UsageError';
}

/** The manifest function refused an upload (malformed manifest): its recorded error. */
export class ManifestRefused extends Error {
  override name = 'ManifestRefused';
}

/** A command that could not finish, for a reason its message tells in one line (exit 1, no stack). */
export class CommandFailed extends Error {
  override name = 'CommandFailed';
}

export const EXIT = { ok: 0, failure: 1, usage: 2, interrupted: 130 } as const;
