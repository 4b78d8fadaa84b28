// Running code with a directory of stand-in commands first on PATH.

/** Run `fn` with `dir` first on PATH, and PATH as it was afterwards. */
export async function withPath<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.PATH;
  process.env.PATH = `${dir}:${saved}`;
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}
