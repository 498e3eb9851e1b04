/** Child for test/config.test.ts: a ConfigManager with a real SIGHUP handler (watch off). argv: <file> */
import { writeSync } from 'node:fs';
import { AgentSettingsSchema } from '../../config/schema.ts';
import { ConfigManager } from '../../config/watch.ts';

const mgr = new ConfigManager({ file: process.argv[2], schema: AgentSettingsSchema, watch: false });
mgr.start();
mgr.installSighup();
mgr.on('change', (next, _prev, keys) => writeSync(1, `CHANGE ${keys.join(',')} ${next.log.level}\n`));
mgr.on('error', (err) => writeSync(1, `ERROR ${err.issues[0]?.path} ${err.issues[0]?.line}\n`));
writeSync(1, `READY ${mgr.current.log.level}\n`);
setInterval(() => {}, 1000);
