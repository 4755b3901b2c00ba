import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

/**
 * Where a browser's push endpoint may point. A push subscription is user input: without these
 * checks any user could make postbox POST to any host its network reaches (an internal admin
 * port, a cloud metadata address). So an endpoint must be `https:` on port 443 (where every
 * browser's push service listens) of a host whose every address is public; both are checked
 * when a browser subscribes and again on every send, at connection time, since DNS can change.
 * `allowPrivate` (PUSH_ALLOW_PRIVATE_ENDPOINTS, tests only) lifts the address and port rules.
 */
export class EndpointRefusedError extends Error {
  override name = 'EndpointRefusedError';
  readonly code = 'PB_PUSH_ENDPOINT_REFUSED';
}

/** Special-purpose ranges (RFC 6890 and its IANA registries) that are not the public internet. */
const blocked = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // RFC 1918
  ['100.64.0.0', 10], // RFC 6598 carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (and cloud metadata, 169.254.169.254)
  ['172.16.0.0', 12], // RFC 1918
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // TEST-NET-1
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // RFC 1918
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // TEST-NET-2
  ['203.0.113.0', 24], // TEST-NET-3
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the broadcast address
] as const) {
  blocked.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['100::', 64], // discard-only
  ['2001::', 23], // IETF protocol assignments (Teredo, ORCHID…)
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  blocked.addSubnet(network, prefix, 'ipv6');
}

/** The IPv4 address a NAT64 (64:ff9b::/96, RFC 6052) or 6to4 (2002::/16, RFC 3056) address embeds. */
function embeddedIpv4(address: string): string | undefined {
  const lower = address.toLowerCase();
  const nat64 = /^64:ff9b::(?:([0-9a-f]{1,4}):([0-9a-f]{1,4})|(\d+\.\d+\.\d+\.\d+))$/.exec(lower);
  const sixToFour = /^2002:([0-9a-f]{1,4}):([0-9a-f]{1,4})(?::|$)/.exec(lower);
  const match = nat64 ?? sixToFour;
  if (!match) return undefined;
  if (match[3] !== undefined) return match[3];
  const hi = parseInt(match[1] ?? '0', 16);
  const lo = parseInt(match[2] ?? '0', 16);
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join('.');
}

/** Whether an IP address (v4 or v6, IPv4-mapped included) is outside the public internet. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return blocked.check(address, 'ipv4');
  if (family !== 6) return true; // not an address at all: refuse
  // BlockList matches IPv4-mapped addresses (::ffff:a.b.c.d) against the IPv4 rules itself.
  if (blocked.check(address, 'ipv6')) return true;
  const v4 = embeddedIpv4(address);
  return v4 !== undefined && blocked.check(v4, 'ipv4');
}

/** The URL's host as a bare address or name (WHATWG keeps IPv6 in brackets). */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/**
 * The checks that need no DNS: an absolute https URL in canonical form (so every parser reads
 * the same host), no credentials, and unless `allowPrivate` port 443 and, for an IP literal,
 * a public address. Throws EndpointRefusedError saying why.
 */
export function checkEndpointUrl(endpoint: string, allowPrivate: boolean): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new EndpointRefusedError('endpoint is not an absolute URL');
  }
  if (url.protocol !== 'https:') throw new EndpointRefusedError('endpoint must be an https: URL (RFC 8030 §8)');
  // web-push parses the endpoint again with the legacy url.parse: only a canonical URL is read alike.
  if (url.href !== endpoint) throw new EndpointRefusedError('endpoint is not a canonical URL');
  if (url.username !== '' || url.password !== '') throw new EndpointRefusedError('endpoint must not carry credentials');
  if (allowPrivate) return url;
  if (url.port !== '') throw new EndpointRefusedError('endpoint must be on port 443');
  const host = hostOf(url);
  if (isIP(host) !== 0 && isPrivateAddress(host)) {
    throw new EndpointRefusedError(`endpoint address ${host} is private, loopback or link-local`);
  }
  return url;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for the sockets of push requests: resolves as `dns.lookup` does and refuses a host
 * any of whose addresses is private. It runs when the socket connects, so the address checked
 * is the address used: a name that resolved to a public address when the browser subscribed
 * and to 127.0.0.1 now (DNS rebinding) is refused.
 */
export function publicOnlyLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    if (bad || addresses.length === 0) {
      const reason = bad ? `${hostname} resolves to ${bad.address}, a private, loopback or link-local address` : `${hostname} has no address`;
      return callback(Object.assign(new EndpointRefusedError(reason), { errno: 0, syscall: 'lookup' }), []);
    }
    if (options.all) return callback(null, addresses);
    const first = addresses[0] as LookupAddress;
    callback(null, first.address, first.family);
  });
}

/** Every check, DNS included, as done when a browser subscribes: resolves, or throws EndpointRefusedError. */
export async function checkEndpoint(endpoint: string, allowPrivate: boolean): Promise<void> {
  const url = checkEndpointUrl(endpoint, allowPrivate);
  const host = hostOf(url);
  if (allowPrivate || isIP(host) !== 0) return;
  await new Promise<void>((resolve, reject) => {
    publicOnlyLookup(host, { all: true }, (err) => {
      if (err instanceof EndpointRefusedError) reject(err);
      else if (err) reject(new EndpointRefusedError(`endpoint host ${host} does not resolve (${err.code ?? err.message})`));
      else resolve();
    });
  });
}
