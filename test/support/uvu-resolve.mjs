// Module resolution hook (registered by uvu-redirect.mjs): every `import … from
// 'uvu'` outside node_modules gets test/support/uvu-tracked.mjs instead, which
// records what each test file registers and how each test ends. Test files
// keep importing plain 'uvu'; none can opt out by forgetting a helper import.
const TRACKED = new URL('./uvu-tracked.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  const parent = context.parentURL ?? '';
  if (specifier === 'uvu' && parent !== TRACKED && !parent.includes('/node_modules/')) {
    return { url: TRACKED, shortCircuit: true };
  }
  return next(specifier, context);
}
