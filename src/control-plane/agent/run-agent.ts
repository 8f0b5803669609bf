// Standalone gateway agent runner (tests, and trying the control plane without
// the daemon): `node dist/control-plane/agent/run-agent.js --state-dir DIR --control URL
// [--listen HOST:PORT] [--fail-volume NAME]... [--slow-volume NAME]...`. Uses RecordingCommandHandler:
// every handler call is logged as {"msg":"handler call","method":...,"arg":...}.
// SIGTERM/SIGINT stop it cleanly (exit 0).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { errorMessage } from '../../errors.js';
import { Logger, type LogLevel } from '../../log.js';
import { GatewayAgent } from './agent.js';
import { RecordingCommandHandler } from './handler.js';

const { values } = parseArgs({
  options: {
    'state-dir': { type: 'string' },
    control: { type: 'string' },
    listen: { type: 'string', default: '127.0.0.1:8080' },
    ca: { type: 'string' },
    'fail-volume': { type: 'string', multiple: true, default: [] },
    'slow-volume': { type: 'string', multiple: true, default: [] },
    'poll-ms': { type: 'string', default: '2000' },
    'backoff-max-ms': { type: 'string', default: '15000' },
    'log-level': { type: 'string', default: 'info' },
  },
});

const logger = new Logger({ level: values['log-level'] as LogLevel });
if (!values['state-dir'] || !values.control) {
  process.stderr.write('usage: run-agent --state-dir DIR --control URL [--listen HOST:PORT] [--fail-volume NAME]\n');
  process.exit(1);
}
const handler = new RecordingCommandHandler({
  failVolumes: values['fail-volume'],
  slowVolumes: values['slow-volume'],
  onCall: (call) => logger.info('handler call', { method: call.method, arg: call.arg }),
});
try {
  const agent = await GatewayAgent.start({
    stateDir: values['state-dir'],
    controlUrl: values.control,
    activationListen: values.listen,
    handler,
    logger,
    activationPollMs: Number(values['poll-ms']),
    backoffMaxMs: Number(values['backoff-max-ms']),
    ...(values.ca ? { controlCa: readFileSync(values.ca) } : {}),
  });
  logger.info('ready', { activationAddress: agent.activationAddress });
  const stop = (): void => { void agent.stop().then(() => process.exit(0)); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} catch (err) {
  logger.error('agent failed to start', { err: errorMessage(err) });
  process.exit(1);
}
