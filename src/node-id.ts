import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/**
 * The id of one postbox node (one createPostbox): `host:pid:random`. It names
 * the node in the admin's node reports and in the messages nodes exchange
 * about users they share; the random part keeps two nodes of one process
 * (tests) and a restarted process with a reused pid apart.
 */
export function createNodeId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}
