/**
 * deploy/jetson: the unit files pass `systemd-analyze verify`, and install.sh --dry-run picks the
 * right profile/role and never overwrites an existing config.
 *
 * verify needs ExecStart's binary to exist, so each unit is verified as a copy in a temp dir with
 * /usr/bin/node replaced by this process's node (only if /usr/bin/node is missing) and
 * /opt/camstream/ by this checkout; every other line is verified as shipped.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AgentSettingsSchema } from '../config/schema.ts';
import { parseConfigText } from '../config/load.ts';

const ROOT = resolve(import.meta.dirname, '..');
const DEPLOY = join(ROOT, 'deploy/jetson');
const UNITS = ['camstream-agent.service', 'camstream-server.service'];

const sa = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const hasSystemdAnalyze = !sa.error;
if (!hasSystemdAnalyze) {
  console.warn(`SKIPPING systemd-analyze verify: systemd-analyze not found (${sa.error?.message}); install the "systemd" package to run it`);
}

describe('unit files', () => {
  test.each(UNITS)('%s has the required directives', (name) => {
    const text = readFileSync(join(DEPLOY, name), 'utf8');
    for (const line of [
      'Type=notify',
      'NotifyAccess=main',
      'WatchdogSec=30',
      'Restart=on-failure',
      'User=camstream',
      'StateDirectory=camstream',
      'ConfigurationDirectory=camstream',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'CapabilityBoundingSet=',
      'SystemCallFilter=@system-service',
      'WorkingDirectory=/opt/camstream',
    ]) {
      expect(text.split('\n')).toContain(line);
    }
    expect(text).toMatch(/^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6/m);
    expect(text).toMatch(/^MemoryMax=/m);
    expect(text).toMatch(/^RestartSec=\d+/m);
    expect(text).toMatch(/^ReadWritePaths=.*\/var\/lib\/camstream/m);
    expect(text).toMatch(/^SupplementaryGroups=.*video/m);
  });

  test('reload re-reads the agent\'s config (SIGHUP); the server has no reload (it reads its config at start)', () => {
    expect(readFileSync(join(DEPLOY, 'camstream-agent.service'), 'utf8').split('\n')).toContain('ExecReload=/bin/kill -HUP $MAINPID');
    expect(readFileSync(join(DEPLOY, 'camstream-server.service'), 'utf8')).not.toMatch(/^ExecReload=/m);
  });

  test('the server cannot write its own config (auth tokens); the agent can (remote set_config)', () => {
    const server = readFileSync(join(DEPLOY, 'camstream-server.service'), 'utf8');
    expect(server).toMatch(/^ReadOnlyPaths=\/etc\/camstream$/m);
    expect(server).not.toMatch(/^ReadWritePaths=.*\/etc\/camstream/m);
    expect(readFileSync(join(DEPLOY, 'camstream-agent.service'), 'utf8')).toMatch(/^ReadWritePaths=.*\/etc\/camstream/m);
  });

  test('agent ExecStart and device access', () => {
    const text = readFileSync(join(DEPLOY, 'camstream-agent.service'), 'utf8');
    expect(text).toContain('ExecStart=/usr/bin/node /opt/camstream/dist/agent/main.js --config /etc/camstream/agent.yaml');
    expect(readFileSync(join(DEPLOY, 'camstream-server.service'), 'utf8')).toContain('ExecStart=/usr/bin/node /opt/camstream/dist/server/main.js --config /etc/camstream/server.yaml');
    expect(text).not.toMatch(/tsx/);
    expect(text).toMatch(/^DeviceAllow=char-video4linux rw$/m);
    expect(text).toMatch(/^DeviceAllow=\/dev\/nvhost-ctrl-gpu rw$/m);
    expect(text).toMatch(/^DeviceAllow=\/dev\/nvmap rw$/m);
  });

  (hasSystemdAnalyze ? test.each(UNITS) : test.skip.each(UNITS))('systemd-analyze verify %s (copy with ExecStart paths made local)', (name) => {
    const dir = mkdtempSync(join(tmpdir(), 'camstream-units-'));
    try {
      let text = readFileSync(join(DEPLOY, name), 'utf8');
      if (!existsSync('/usr/bin/node')) text = text.replaceAll('/usr/bin/node ', `${process.execPath} `);
      text = text.replaceAll('/opt/camstream/', `${ROOT}/`);
      const file = join(dir, name);
      writeFileSync(file, text);
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8' });
      const ours = (r.stderr + r.stdout).split('\n').filter((l) => l.includes(name));
      expect({ status: r.status, warnings: ours }).toEqual({ status: 0, warnings: [] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  (hasSystemdAnalyze ? test : test.skip)('verify does catch a broken unit (the check is not vacuous)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'camstream-units-'));
    try {
      const file = join(dir, 'broken.service');
      writeFileSync(file, '[Service]\nType=notify\nNoNewPrivilege=yes\nExecStart=/nonexistent/node x\n');
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8' });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/Unknown key 'NoNewPrivilege'/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('install.sh --dry-run', () => {
  const install = (args: string[], env: Record<string, string> = {}) =>
    spawnSync('bash', [join(DEPLOY, 'install.sh'), '--dry-run', ...args], { encoding: 'utf8', env: { ...process.env, ...env } });

  test('is valid bash', () => {
    expect(spawnSync('bash', ['-n', join(DEPLOY, 'install.sh')]).status).toBe(0);
  });

  test('Jetson (aarch64 + tegra) → edge-jetson agent; every step printed, none run', () => {
    const dir = mkdtempSync(join(tmpdir(), 'camstream-inst-'));
    try {
      const cfgDir = join(dir, 'etc');
      const unitDir = join(dir, 'units');
      const prefix = join(dir, 'opt');
      const r = install(['--config-dir', cfgDir, '--unit-dir', unitDir, '--prefix', prefix], { CAMSTREAM_UNAME_M: 'aarch64', CAMSTREAM_JETSON: '1' });
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/profile=edge-jetson role=agent/);
      expect(r.stdout).toMatch(/useradd --system .* camstream|user camstream exists/);
      expect(r.stdout).toContain(`npm --prefix ${prefix} ci`);
      // compiled services with production dependencies only: build, then prune, in that order
      const steps = ['run build:native', 'run build:cuda', 'run build', 'prune --omit=dev --no-audit --no-fund'].map((s) => r.stdout.indexOf(`npm --prefix ${prefix} ${s}\n`));
      expect(steps.every((i, k) => i > 0 && (k === 0 || i > steps[k - 1]))).toBe(true);
      expect(r.stdout).toContain('ONNXRUNTIME_NODE_INSTALL=skip');
      expect(r.stdout).toContain(`[dry-run] install -m 0660 -o root -g camstream ${ROOT}/config/examples/agent.yaml ${cfgDir}/agent.yaml`);
      expect(r.stdout).toMatch(/profile: edge-jetson/);
      expect(r.stdout).toContain(`${unitDir}/camstream-agent.service`);
      expect(r.stdout).toContain('[dry-run] systemctl daemon-reload');
      expect(r.stdout).toContain('[dry-run] systemctl enable camstream-agent.service');
      // started with restart, so an upgrade over a running service runs the new code (enable --now left it as it was)
      expect(r.stdout).toContain('[dry-run] systemctl restart camstream-agent.service');
      // dry run: nothing created
      expect(existsSync(cfgDir) || existsSync(unitDir) || existsSync(prefix)).toBe(false);
      // every mutating step is a [dry-run] line
      expect(r.stdout).not.toMatch(/^\+ /m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each([
    [{ CAMSTREAM_UNAME_M: 'aarch64', CAMSTREAM_JETSON: '0' }, [], 'profile=edge-cpu role=agent'],
    [{ CAMSTREAM_UNAME_M: 'x86_64', CAMSTREAM_NVIDIA_SMI: '1' }, [], 'profile=server-gpu role=server'],
    [{ CAMSTREAM_UNAME_M: 'x86_64', CAMSTREAM_NVIDIA_SMI: '0' }, [], 'profile=edge-cpu role=agent'],
    [{ CAMSTREAM_UNAME_M: 'x86_64', CAMSTREAM_NVIDIA_SMI: '0' }, ['--role', 'server'], 'profile=server-cpu role=server'],
    [{ CAMSTREAM_UNAME_M: 'x86_64', CAMSTREAM_NVIDIA_SMI: '1' }, ['--role', 'agent'], 'profile=edge-cpu role=agent'],
  ])('detection %j %j → %s', (env, args, expected) => {
    const r = install(['--no-start', ...args], env);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(expected);
    expect(r.stdout).toMatch(/\[dry-run\] systemctl enable camstream-(agent|server)\.service/);
  });

  test('an existing config is kept, not overwritten', () => {
    const r = install(['--config-dir', join(ROOT, 'config/examples')], { CAMSTREAM_UNAME_M: 'x86_64', CAMSTREAM_NVIDIA_SMI: '0' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`keeping existing ${ROOT}/config/examples/agent.yaml (not overwriting)`);
    expect(r.stdout).not.toMatch(/install -m 0660 .*agent\.yaml/);
  });

  test('bad arguments fail with a message', () => {
    expect(install(['--role', 'server', '--profile', 'edge-cpu']).stderr).toMatch(/does not match/);
    expect(install(['--profile', 'edge-tpu']).status).not.toBe(0);
    expect(install(['--bogus']).stderr).toMatch(/unknown option/);
    expect(install([], { CAMSTREAM_UNAME_M: 'riscv64' }).stderr).toMatch(/unsupported architecture/);
  });

  test('the config install.sh writes (example + profile) is valid', () => {
    const text = readFileSync(join(ROOT, 'config/examples/agent.yaml'), 'utf8').replace(/^profile: .*/m, 'profile: edge-jetson');
    expect(parseConfigText(text, AgentSettingsSchema, 'agent.yaml').value.profile).toBe('edge-jetson');
  });
});
