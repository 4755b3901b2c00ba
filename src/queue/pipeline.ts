import type { ChainableCommander } from 'ioredis';

/** One reply of a pipeline: the command's error, or its value. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: Error };

/**
 * For pipelines, not MULTI transactions (whose `length` counts the MULTI).
 *
 * Runs a pipeline and returns each command's reply in order, or the error of
 * the first command that failed. A reply missing from what ioredis returned
 * (it never should) is an error too, never a silent `undefined`.
 */
export async function execPipeline<T = unknown>(pipeline: ChainableCommander): Promise<T[]> {
  const settled = await execPipelineSettled<T>(pipeline);
  return settled.map((s) => {
    if (!s.ok) throw s.error;
    return s.value;
  });
}

/**
 * Runs a pipeline and returns every command's outcome, so one failed command
 * (a key that moved during a resharding, a script error) does not hide the
 * replies of the others.
 */
export async function execPipelineSettled<T = unknown>(pipeline: ChainableCommander): Promise<Array<Settled<T>>> {
  const length = pipeline.length;
  if (length === 0) return [];
  const replies = (await pipeline.exec()) ?? [];
  const out: Array<Settled<T>> = [];
  for (let i = 0; i < length; i += 1) {
    const reply = replies[i];
    if (reply === undefined) out.push({ ok: false, error: new Error(`pipeline reply ${i} of ${length} is missing`) });
    else if (reply[0]) out.push({ ok: false, error: reply[0] });
    else out.push({ ok: true, value: reply[1] as T });
  }
  return out;
}
