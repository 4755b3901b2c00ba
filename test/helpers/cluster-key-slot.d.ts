// cluster-key-slot ships no types. It is the slot function ioredis itself routes
// with (an ioredis dependency), so a helper using it agrees with the client by construction.
declare module 'cluster-key-slot' {
  /**
   * The Redis Cluster slot of a key: CRC16/XMODEM of the key, or of its hash
   * tag (the part between the first `{` and the next `}` when non-empty),
   * modulo 16384 (Redis Cluster specification, "Keys distribution model").
   */
  function calculateSlot(key: string | Buffer): number;
  export = calculateSlot;
}
