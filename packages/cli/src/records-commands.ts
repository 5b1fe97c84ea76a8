/**
 * The records-management commands of `custody`: redact (and erasure), purge,
 * retention, hold, digests and find-value. Each talks to a server through
 * connection.ts with an admin key (find-value and the lists need read access).
 * See docs/records.md.
 */
import type { Command } from 'commander';

import { runDigests, runFindValue } from './commands/find-value.js';
import { runHold, runPurge, runRetention } from './commands/purge.js';
import { runRedact } from './commands/redact.js';
import { addConnectionOptions } from './connection.js';
import type { Output } from './output.js';

/** Registers `redact`, `purge`, `retention`, `hold`, `digests` and `find-value` on the program. */
export function registerRecordsCommands(program: Command, io: Output, later: (p: Promise<number>) => Promise<void>): void {
  addConnectionOptions(
    program
      .command('redact')
      .summary('redact fields of an event, or erase a data subject')
      .description(
        'Drop the disclosures of committed fields (POST /v1/events/:id/redact), after sealing too: the\n' +
          'entry and every proof stay valid, and bundles made later report the fields as redacted.\n' +
          'With --subject, redact every committed field of every event the principal initiated\n' +
          '(an erasure request; progress on stderr). Each redacted event is recorded as admin.redacted,\n' +
          'naming the fields but not their values.',
      )
      .argument('[event-id]', 'the event to redact')
      .option('--field <pointer...>', 'JSON Pointer of a committed field, e.g. /data/arguments (repeatable)')
      .option('--subject <principal-id>', 'erase: every event whose initiator is this principal')
      .option('--reason <text>', 'why (recorded; name no sensitive value here)')
      .option('--json', 'print JSON'),
    'admin',
  )
    .addHelpText(
      'after',
      '\nExamples:\n  $ custody redact 0193a0c2-… --field /data/arguments --reason "GDPR request 88"\n  $ custody redact --subject ivy@example.com --reason "erasure request 91"',
    )
    .action((eventId: string | undefined, opts: Parameters<typeof runRedact>[1]) => later(runRedact(eventId, opts, io)));

  addConnectionOptions(
    program
      .command('purge')
      .summary('drop disclosures past retention (legal holds respected)')
      .description(
        'Run a purge (POST /v1/records/purge): drop every disclosure past its retention rule, except in\n' +
          'entries under a legal hold. Entries, tree nodes and checkpoints stay: every receipt and\n' +
          'consistency proof still verifies. The run is recorded as admin.purged entries.',
      )
      .option('--dry-run', 'count what would be purged; change and record nothing')
      .option('--json', 'print JSON'),
    'admin',
  ).action((opts: Parameters<typeof runPurge>[0]) => later(runPurge(opts, io)));

  const retention = program
    .command('retention')
    .summary('list, set and delete retention rules')
    .description(
      'Retention rules: how many days the committed fields of an event type (a family such as tool.*,\n' +
        'or *) are kept after recordedAt, optionally for one field only. The most specific type wins,\n' +
        'then the most specific field; fields no rule covers are kept. Changes are admin.* entries.',
    );
  const retOpts = (c: Command) => addConnectionOptions(c.option('--json', 'print JSON'), 'admin');
  retOpts(retention.command('list').description('list the rules')).action((opts: Parameters<typeof runRetention>[1]) => later(runRetention('list', opts, io)));
  retOpts(
    retention
      .command('set')
      .description('set a rule')
      .option('--type <type>', 'event type, family (tool.*) or *')
      .option('--field <pointer>', 'one committed field (default: every committed field)')
      .option('--days <n>', 'days to keep'),
  )
    .addHelpText('after', '\nExamples:\n  $ custody retention set --type "*" --days 365\n  $ custody retention set --type tool.completed --field /data/result --days 30')
    .action((opts: Parameters<typeof runRetention>[1]) => later(runRetention('set', opts, io)));
  retOpts(retention.command('delete').description('delete a rule').option('--type <type>', 'the rule type').option('--field <pointer>', 'the rule field')).action(
    (opts: Parameters<typeof runRetention>[1]) => later(runRetention('delete', opts, io)),
  );

  const hold = program
    .command('hold')
    .summary('place, list and lift legal holds')
    .description('Legal holds block purging of a session, a principal (in any role) or a time range of recordedAt until lifted.');
  const holdOpts = (c: Command) => addConnectionOptions(c.option('--json', 'print JSON'), 'admin');
  holdOpts(hold.command('list').description('list holds, lifted ones included')).action((opts: Parameters<typeof runHold>[2]) => later(runHold('list', undefined, opts, io)));
  holdOpts(
    hold
      .command('place')
      .description('place a hold')
      .option('--session <id>', 'hold a session')
      .option('--principal <id>', 'hold every entry naming a principal')
      .option('--since <time>', 'hold entries recorded at or after (RFC 3339), with --until')
      .option('--until <time>', 'hold entries recorded before (RFC 3339)')
      .option('--reason <text>', 'why (e.g. the matter number)'),
  )
    .addHelpText('after', '\nExamples:\n  $ custody hold place --session s-1 --reason "matter 2026-14"\n  $ custody hold place --since 2026-11-01T00:00:00Z --until 2026-11-08T00:00:00Z --reason "incident 7"')
    .action((opts: Parameters<typeof runHold>[2]) => later(runHold('place', undefined, opts, io)));
  holdOpts(hold.command('lift').description('lift a hold').argument('<id>', 'hold id').option('--reason <text>', 'why')).action(
    (id: string, opts: Parameters<typeof runHold>[2]) => later(runHold('lift', id, opts, io)),
  );

  const digests = program
    .command('digests')
    .summary('choose which values are searchable by keyed digest')
    .description(
      'The JSON Pointers (e.g. /data/arguments/customerId) whose values are indexed as HMAC-SHA-256\n' +
        'digests under a per-tenant key, so custody find-value can find them; the values are not stored.',
    );
  digests
    .command('list')
    .description('list the indexed pointers')
    .option('--json', 'print JSON');
  addConnectionOptions(digests.commands[0]!, 'read').action((opts: Parameters<typeof runDigests>[2]) => later(runDigests('list', [], opts, io)));
  addConnectionOptions(digests.command('set').description('replace the indexed pointers (re-indexes the log)').argument('<pointer...>', 'JSON Pointers').option('--json', 'print JSON'), 'admin').action(
    (paths: string[], opts: Parameters<typeof runDigests>[2]) => later(runDigests('set', paths, opts, io)),
  );

  addConnectionOptions(
    program
      .command('find-value')
      .summary('find every event that used a value, by keyed digest')
      .description('Find every event whose value at an indexed JSON Pointer equals <value> (GET /v1/records/find), oldest first.')
      .argument('<pointer=value>', 'e.g. /data/arguments/customerId=c-1042')
      .option('--limit <n>', 'events per page, 1-1000 (default 100)')
      .option('--all', 'follow every page')
      .option('--json', 'print one EventView JSON per line'),
  ).action((match: string, opts: Parameters<typeof runFindValue>[1]) => later(runFindValue(match, opts, io)));
}
