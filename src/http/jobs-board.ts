import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { KoaAdapter } from '@bull-board/koa';
import type { Queue } from 'bullmq';
import type { JobsBoard } from './admin-ui.js';

/** Where bull-board is mounted; adminUiRoutes guards every path under it. */
export const JOBS_BOARD_PATH = '/admin/jobs';

/**
 * bull-board (the BullMQ dashboard) over postbox's queues, as a Koa
 * middleware for `adminUiRoutes` to mount behind the admin auth. It serves
 * its own UI and JSON API under JOBS_BOARD_PATH; every request reaching it
 * already passed the admin cookie or Bearer check.
 */
export function createJobsBoard(queues: Queue[]): JobsBoard {
  const serverAdapter = new KoaAdapter();
  serverAdapter.setBasePath(JOBS_BOARD_PATH);
  createBullBoard({
    queues: queues.map((q) => new BullMQAdapter(q)),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'postbox jobs' } },
  });
  return serverAdapter.registerPlugin() as JobsBoard;
}
