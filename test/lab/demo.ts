export async function runDemo(): Promise<number> { console.error("demo: not yet"); return 1; }
