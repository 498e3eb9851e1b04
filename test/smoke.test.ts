import { readFileSync } from 'node:fs';
test('package is ESM', () => {
  expect(JSON.parse(readFileSync('package.json', 'utf8')).type).toBe('module');
});
