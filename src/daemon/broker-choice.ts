import type { ResolvedConfig } from '../config/load';

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** Plan for reaching a broker: an external URL, an embedded broker, or a probe that picks one. */
export type BrokerPlan =
  | { kind: 'external'; url: string; probe: null }
  | { kind: 'embedded'; host: string; port: number }
  | { kind: 'probe-then-embed'; url: string; probeHost: string; probePort: number; host: string; port: number };

/**
 * Decides how to reach a broker. In `auto` mode a broker already listening on the loopback
 * URL is used (many Raspberry Pis run Mosquitto on 1883), otherwise one is embedded. A URL
 * that is not on loopback is always used as it is.
 */
export function planBroker(mqtt: ResolvedConfig['mqtt']): BrokerPlan {
  if (mqtt.broker === 'external') return { kind: 'external', url: mqtt.url, probe: null };
  if (mqtt.broker === 'embedded') return { kind: 'embedded', host: mqtt.embeddedHost, port: mqtt.embeddedPort };

  const url = new URL(mqtt.url);
  const isPlainTcp = url.protocol === 'mqtt:' || url.protocol === 'tcp:';
  if (!isPlainTcp || !LOOPBACK_HOSTS.has(url.hostname)) return { kind: 'external', url: mqtt.url, probe: null };

  const probeHost = url.hostname === 'localhost' ? '127.0.0.1' : url.hostname.replace(/^\[|\]$/g, '');
  return {
    kind: 'probe-then-embed',
    url: mqtt.url,
    probeHost,
    probePort: url.port ? Number(url.port) : 1883,
    host: mqtt.embeddedHost,
    port: mqtt.embeddedPort,
  };
}

/** URL a client uses for a broker on `host:port`, with IPv6 literals bracketed. */
export function brokerUrl(host: string, port: number): string {
  return host.includes(':') ? `mqtt://[${host}]:${port}` : `mqtt://${host}:${port}`;
}
