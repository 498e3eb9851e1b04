/**
 * Wiring of the fleet page and the ask API for server/main.ts: loads the CacheBlend model (if present), opens the
 * chunk KV store under the server's storage dir, and starts the optional MQTT bridge.
 */
import type http from 'node:http';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { AskService } from '../cacheblend/ask.ts';
import type { Selection } from '../cacheblend/blend.ts';
import { WINDOW_MIN } from '../cacheblend/eventlog.ts';
import { BlendModel, DEFAULT_MODEL_DIR } from '../cacheblend/model.ts';
import { KvStore } from '../cacheblend/store.ts';
import { AskMqttBridge } from './ask-mqtt.ts';
import { FleetApi } from './fleet-api.ts';
import type { ServerStore } from './store.ts';

export interface AskSettings {
  enabled: boolean;
  modelDir?: string;
  /** windows (10 min each) of the newest event logs a question is asked over */
  windows: number;
  selection: Selection;
  cache: { ramMiB: number; diskMiB: number };
  mqtt: { enabled: boolean; url: string; baseTopic: string; username?: string; password?: string };
}

export interface AskLog {
  info: (o: object, msg: string) => void;
  warn: (o: object, msg: string) => void;
  error: (o: object, msg: string) => void;
}

export async function startFleetAsk(o: {
  settings: AskSettings;
  storageDir: string;
  store: ServerStore;
  authorize: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  tokenOk: (token: string | undefined) => boolean;
  log: AskLog;
}): Promise<{ api: FleetApi; stop: () => Promise<void> }> {
  const dir = o.settings.modelDir ?? DEFAULT_MODEL_DIR;
  let model: BlendModel | null = null;
  let kv: KvStore | null = null;
  let service: AskService | null = null;
  if (o.settings.enabled) {
    if (!existsSync(path.join(dir, 'model.json'))) o.log.warn({ component: 'ask', dir }, 'no CacheBlend model: /api/ask answers 503');
    else {
      // an optional feature: a model or cache folder that cannot be opened leaves /api/ask at 503, the server runs
      try {
        model = await BlendModel.load(dir);
        kv = new KvStore(path.join(o.storageDir, 'cacheblend'), o.settings.cache.ramMiB * 2 ** 20);
      } catch (e) {
        o.log.error({ component: 'ask', dir, err: (e as Error).message }, 'CacheBlend model or cache unusable: /api/ask answers 503');
        await model?.release();
        model = null;
      }
    }
    if (model && kv) {
      const span = o.settings.windows * WINDOW_MIN * 60_000;
      service = new AskService(
        model,
        kv,
        () => {
          const newest = o.store.latestCapture();
          return newest === null ? [] : o.store.segmentEvents(Math.floor(newest / (WINDOW_MIN * 60_000)) * WINDOW_MIN * 60_000 - span + WINDOW_MIN * 60_000);
        },
        o.settings.selection, // check layers beyond the model's depth are refused here, with the reason
        o.settings.cache.diskMiB * 2 ** 20,
      );
      o.log.info({ component: 'ask', layers: model.shape.layers, chunks: kv.stats().chunks }, 'CacheBlend ask API ready');
    }
  }
  const api = new FleetApi({ source: o.store, asker: service, authorize: o.authorize });
  let bridge: AskMqttBridge | null = null;
  if (service && o.settings.mqtt.enabled) {
    bridge = new AskMqttBridge({ ...o.settings.mqtt, asker: service, authorized: o.tokenOk, log: o.log });
    void bridge.start().then(() => o.log.info({ component: 'ask-mqtt', url: o.settings.mqtt.url }, 'answering on MQTT'));
  }
  return {
    api,
    async stop() {
      await bridge?.stop();
      kv?.close();
      await model?.release();
    },
  };
}
