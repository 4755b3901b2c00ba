/**
 * Waits for every promise and returns each one's value, or its Error, in
 * order: one failed command (a key moving between shards, a script error)
 * does not hide the others' replies. With auto-pipelining, commands issued
 * together this way leave in one write per Redis node.
 */
export async function settle<T>(promises: Array<Promise<T>>): Promise<Array<T | Error>> {
  const results = await Promise.allSettled(promises);
  return results.map((r) =>
    r.status === 'fulfilled' ? r.value : r.reason instanceof Error ? r.reason : new Error(String(r.reason)),
  );
}
