/** remote_url parsing: the accepted forms, and errors that never show a password. */

import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { parseValkeyUrl, redactUrl } from '../../src/tiers/valkey-url.js';

describe('parseValkeyUrl', () => {
  it.each([
    ['valkey://localhost', { mode: 'single', tls: false, addresses: [{ host: 'localhost', port: 6379 }], databaseId: 0 }],
    ['redis://10.0.0.5:6380', { mode: 'single', tls: false, addresses: [{ host: '10.0.0.5', port: 6380 }], databaseId: 0 }],
    ['valkeys://cache.example:6390/2', { mode: 'single', tls: true, addresses: [{ host: 'cache.example', port: 6390 }], databaseId: 2 }],
    ['rediss://h:1', { mode: 'single', tls: true, addresses: [{ host: 'h', port: 1 }], databaseId: 0 }],
    ['valkey://alice:s3cr%40t@h:7000/3', { username: 'alice', password: 's3cr@t', databaseId: 3, addresses: [{ host: 'h', port: 7000 }] }],
    ['redis://:onlypass@h', { password: 'onlypass', addresses: [{ host: 'h', port: 6379 }] }],
    ['valkey://u:p@ss:w/rd@h:1', { username: 'u', password: 'p@ss:w/rd', addresses: [{ host: 'h', port: 1 }] }],
    ['valkey://[::1]:7001', { addresses: [{ host: '::1', port: 7001 }] }],
    ['valkey-cluster://a:7000,b:7001, c:7002', { mode: 'cluster', tls: false, addresses: [{ host: 'a', port: 7000 }, { host: 'b', port: 7001 }, { host: 'c', port: 7002 }] }],
    ['valkeys-cluster://a:7000', { mode: 'cluster', tls: true }],
    ['VALKEY://H:5', { mode: 'single', addresses: [{ host: 'H', port: 5 }] }],
  ])('%s', (url, expected) => {
    const ep = parseValkeyUrl(url);
    expect(ep).toMatchObject(expected);
    if (!('password' in expected)) expect(ep.password).toBeUndefined();
  });

  it('mode cluster turns a plain URL into cluster seeds', () => {
    expect(parseValkeyUrl('valkey://a:1,b:2', { mode: 'cluster' })).toMatchObject({ mode: 'cluster', addresses: [{ host: 'a', port: 1 }, { host: 'b', port: 2 }] });
  });

  it.each([
    ['localhost:6379', /not a URL/],
    ['http://h:1', /scheme "http" is not supported/],
    ['valkey://', /no host/],
    ['valkey://h:0', /port "0"/],
    ['valkey://h:70000', /port "70000"/],
    ['valkey://h:abc', /port "abc"/],
    ['valkey://h/x', /database "x"/],
    ['valkey://a:1,b:2', /several hosts/],
    ['valkey-cluster://a:1/2', /only database 0/],
    ['valkey://user@h', /user without a password/],
    ['valkey://h?timeout=3', /query strings/],
    ['valkey://[::1:7', /unclosed/],
  ])('rejects %s', (url, message) => {
    expect(() => parseValkeyUrl(url)).toThrow(ConfigError);
    expect(() => parseValkeyUrl(url)).toThrow(message);
  });

  it('errors name the URL without its password', () => {
    let caught: unknown;
    try {
      parseValkeyUrl('valkey://bob:hunter2@h:99999');
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const msg = (caught as Error).message;
    expect(msg).toContain('valkey://bob:***@h:99999');
    expect(msg).not.toContain('hunter2');
    expect(parseValkeyUrl('valkey://bob:hunter2@h:1').redacted).toBe('valkey://bob:***@h:1');
  });
});

describe('redactUrl', () => {
  it.each([
    ['valkey://u:p@h:1/0', 'valkey://u:***@h:1/0'],
    ['redis://:p@h', 'redis://:***@h'],
    ['valkey://u:p@ss@h', 'valkey://u:***@h'],
    ['valkey://h:6379', 'valkey://h:6379'],
    ['valkey-cluster://a:1,b:2', 'valkey-cluster://a:1,b:2'],
    ['not a url', 'not a url'],
  ])('%s', (url, redacted) => {
    expect(redactUrl(url)).toBe(redacted);
  });
});
