// http_ece ships no types; this covers the part the test push service uses.
declare module 'http_ece' {
  import type { ECDH } from 'node:crypto';

  /** Binary values may be Buffers or base64url strings. */
  interface EceParams {
    /** @defaultValue 'aes128gcm' (RFC 8188); 'aesgcm' is the older Web Push draft. */
    version?: 'aes128gcm' | 'aesgcm';
    /** An explicit 16-byte content-encryption key, instead of ECDH. */
    key?: Buffer | string;
    /** The receiver's key pair (Web Push: the user agent's P-256 key, RFC 8291 §3.1). */
    privateKey?: ECDH;
    /** The sender's public key, for 'aesgcm' only: aes128gcm carries it in the header's keyid. */
    dh?: Buffer | string;
    /** The 16-byte Web Push authentication secret (RFC 8291 §3.2). */
    authSecret?: Buffer | string;
    salt?: Buffer | string;
    /** Record size in bytes. @defaultValue 4096 */
    rs?: number;
  }

  const ece: {
    /** Decrypts an encrypted content coding; throws on a wrong key or a tampered body. */
    decrypt(buffer: Buffer, params: EceParams): Buffer;
    encrypt(buffer: Buffer, params: EceParams): Buffer;
  };
  export = ece;
}
