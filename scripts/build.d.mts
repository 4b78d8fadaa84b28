// Types of scripts/build.mjs, for the tests that build bundles the same way.
export declare const entries: Record<string, string>;
export declare const banner: string;
export declare function buildBundles(options?: { outdir?: string; version?: string; metafile?: string }): Promise<void>;
