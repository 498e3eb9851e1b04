/**
 * Edge agent daemon entry point.
 *   node --import tsx agent/main.ts --config /etc/camstream/agent.yaml
 * SIGHUP reloads the config file; SIGTERM/SIGINT stop gracefully (the segment in flight is persisted).
 */
import { rootLogger } from '../proc/log.ts';
import { Agent, openAgentStore } from './agent.ts';
import { configPathFromArgv } from '../config/load.ts';
import { ConfigManager } from '../config/watch.ts';
import { AgentSettingsSchema, type AgentSettings } from '../config/schema.ts';
import { isMainModule } from '../proc/main-module.ts';

export async function runAgent(argv: string[]): Promise<Agent> {
  const file = configPathFromArgv(argv, '/etc/camstream/agent.yaml');
  const log = rootLogger('camstream-agent');
  // the first load fails loudly: a daemon with no good config must not start
  const probe = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false });
  const first = probe.start() as AgentSettings;
  probe.stop();
  const store = openAgentStore(first, log);
  const config = new ConfigManager({ file, schema: AgentSettingsSchema, store, logger: log.child({ component: 'config' }) });
  const settings = config.start() as AgentSettings;
  log.level = settings.log.level;
  config.on('error', (e) => log.error({ component: 'config', err: e.message }, 'config change rejected; keeping the last good config'));
  config.installSighup();
  const maxArg = argv.find((a) => a.startsWith('--max-segments='));
  const agent = new Agent(settings, { logger: log, config, store, maxSegments: maxArg ? Number(maxArg.split('=')[1]) : undefined });
  await agent.start();
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ component: 'agent', signal: sig }, 'stopping');
    config.stop();
    await agent.stop();
    store.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  if (maxArg) {
    // bounded run (demo): stop once the last segment was acknowledged by the server or after a grace period
    void agent.finished().then(async () => {
      await agent.drained(120_000); // generous: a loaded server may take seconds per segment
      await stop('max-segments');
    });
  }
  return agent;
}

if (isMainModule(import.meta.url)) {
  runAgent(process.argv.slice(2)).catch((e) => {
    console.error(`camstream-agent: ${(e as Error).message}`);
    process.exit(1);
  });
}
