import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseRequest } from '../../agent/control/protocol.js';

describe('control protocol', () => {
  it('accepts a well-formed request', () => {
    expect(parseRequest('{"v":1,"id":3,"cmd":"status"}')).toEqual({ v: 1, id: 3, cmd: 'status', args: undefined });
  });
  it('rejects bad JSON, wrong version, bad fields', () => {
    expect(parseRequest('{')).toMatchObject({ error: { code: 'E_BAD_JSON' } });
    expect(parseRequest('{"v":2,"id":1,"cmd":"x"}')).toMatchObject({ error: { code: 'E_VERSION' } });
    expect(parseRequest('{"v":1,"id":"1","cmd":"x"}')).toMatchObject({ error: { code: 'E_BAD_REQUEST' } });
    expect(parseRequest('{"v":1,"id":1,"cmd":"x","args":[1]}')).toMatchObject({ error: { code: 'E_BAD_REQUEST' } });
    expect(parseRequest('null')).toMatchObject({ error: { code: 'E_BAD_REQUEST' } });
  });
  it('never throws on arbitrary input', () => {
    fc.assert(fc.property(fc.string(), (s) => {
      const r = parseRequest(s);
      expect(typeof r).toBe('object');
    }));
  });
});
