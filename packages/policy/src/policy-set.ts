/**
 * Loading a policy set: a folder of `.cedar` files (and optional `.cedarschema`
 * fragments), parsed and validated against Custody's schema at load.
 * See docs/policies.md, "Loading and validation".
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { canonicalPolicyText, compareNames, normaliseText, type PolicySourceFile, policySetVersion } from './canonical-text.js';
import { byteLength, cedar, type CedarType, type DetailedError, lineColumn } from './cedar.js';
import { formatIssue, PolicyError, type PolicyIssue } from './errors.js';
import { BASE_SCHEMA } from './schema.js';

/** One policy of a loaded set. */
export interface LoadedPolicy {
  /** Its `@id` annotation, else `<file>#<n>` (n counts from 1 within the file). */
  id: string;
  file: string;
  line: number;
  column: number;
  effect: 'permit' | 'forbid';
  /** True for a `forbid` annotated `@approval("required")`: it asks for a human's approval instead of denying. */
  approval: boolean;
  /** Its `@reason` annotation, if any: the text a decision gives for it. */
  reason?: string;
  /** The policy's Cedar text, as written. */
  text: string;
}

/** A parsed, validated policy set, ready for {@link PolicyEngine}. */
export interface CompiledPolicySet {
  /** `sha256:<hex>` of the canonical text (docs/policies.md, "Versioning"). */
  version: string;
  /** The canonical text the version is the digest of. */
  canonicalText: string;
  /** The source files, in canonical order. */
  files: string[];
  policies: LoadedPolicy[];
  /** Policies that can never apply and other validator warnings. Loading succeeds with them. */
  warnings: PolicyIssue[];
  /** The full schema text (built-in schema plus the folder's fragments). */
  schemaText: string;
  /** The resolved type of `context.arguments`. */
  argumentsType: CedarType;
}

const POLICY_EXT = '.cedar';
const SCHEMA_EXT = '.cedarschema';
const MAX_ID = 256;

/**
 * Reads a policy folder (not recursive): every `*.cedar` and `*.cedarschema` file.
 * @throws PolicyError `POLICY_DIR_UNREADABLE`, `POLICY_DIR_EMPTY`
 */
export function readPolicyFolder(dir: string): PolicySourceFile[] {
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new PolicyError('POLICY_DIR_UNREADABLE', `${dir} is not a folder of .cedar files`);
    names = readdirSync(dir);
  } catch (err) {
    if (err instanceof PolicyError) throw err;
    throw new PolicyError('POLICY_DIR_UNREADABLE', `cannot read the policy folder ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  const files: PolicySourceFile[] = [];
  for (const name of names.filter((n) => n.endsWith(POLICY_EXT) || n.endsWith(SCHEMA_EXT)).sort(compareNames)) {
    const path = join(dir, name);
    try {
      if (!statSync(path).isFile()) continue;
      files.push({ name, text: readFileSync(path, 'utf8') });
    } catch (err) {
      throw new PolicyError('POLICY_DIR_UNREADABLE', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
  }
  if (!files.some((f) => f.name.endsWith(POLICY_EXT))) {
    throw new PolicyError('POLICY_DIR_EMPTY', `the policy folder ${dir} holds no .cedar files (an empty set would deny everything; add at least one policy)`);
  }
  return files;
}

/**
 * Loads and validates the policy set in `dir`.
 * @throws PolicyError (see {@link compilePolicySet} and {@link readPolicyFolder})
 * @example
 * const set = loadPolicySet('examples/policies');
 * for (const w of set.warnings) console.warn(formatIssue(w));
 * const engine = new PolicyEngine(set);
 */
export function loadPolicySet(dir: string): CompiledPolicySet {
  return compilePolicySet(readPolicyFolder(dir));
}

/** Turns cedar-wasm errors into issues located in `file` (offsets relative to `text`, shifted by `base` bytes). */
function issuesOf(errors: readonly DetailedError[], file: string, text: string, base = 0, policy?: string): PolicyIssue[] {
  return errors.map((e) => {
    const at = e.sourceLocations?.[0];
    const { line, column } = lineColumn(text, base + (at?.start ?? 0));
    const detail = [at?.label, e.help].filter((s): s is string => typeof s === 'string' && s !== '').join('; ');
    return { file, line, column, ...(policy !== undefined ? { policy } : {}), message: detail === '' ? e.message : `${e.message} (${detail})` };
  });
}

function fail(code: 'POLICY_PARSE_ERROR' | 'POLICY_INVALID' | 'POLICY_SCHEMA_INVALID' | 'POLICY_ANNOTATION_INVALID' | 'POLICY_DUPLICATE_ID' | 'POLICY_TEMPLATE_UNSUPPORTED', what: string, issues: PolicyIssue[]): never {
  const shown = issues.slice(0, 5).map(formatIssue).join('\n  ');
  const more = issues.length > 5 ? `\n  … and ${issues.length - 5} more` : '';
  throw new PolicyError(code, `${what}:\n  ${shown}${more}`, { issues });
}

/** Replaces references to common types (`{ "type": "Money" }`) by their definitions. */
function inlineCommonTypes(t: CedarType, common: Record<string, CedarType>, depth: number): CedarType {
  if (depth > 32) return t;
  const n = t as { type: string; element?: CedarType; attributes?: Record<string, CedarType & { required?: boolean }> };
  const def = common[n.type];
  if (def !== undefined) return { ...inlineCommonTypes(def, common, depth + 1), ...('required' in n ? { required: (n as { required?: boolean }).required } : {}) } as CedarType;
  if (n.type === 'Set' && n.element !== undefined) return { ...n, element: inlineCommonTypes(n.element, common, depth + 1) } as CedarType;
  if (n.type === 'Record' && n.attributes !== undefined) {
    return { ...n, attributes: Object.fromEntries(Object.entries(n.attributes).map(([k, a]) => [k, inlineCommonTypes(a, common, depth + 1)])) } as CedarType;
  }
  return t;
}

/** Composes the schema and resolves the `Arguments` type. */
function composeSchema(fragments: readonly PolicySourceFile[]): { schemaText: string; argumentsType: CedarType } {
  let schemaText = BASE_SCHEMA;
  const segments: { file: string; start: number; text: string }[] = [];
  for (const f of fragments) {
    const text = normaliseText(f.text);
    schemaText += `// --- ${f.name}\n`;
    segments.push({ file: f.name, start: byteLength(schemaText), text });
    schemaText += text;
  }
  const definesArguments = segments.some((s) => /(^|[\s;])type\s+Arguments\s*=/.test(s.text.replace(/\/\/.*$/gm, '')));
  if (!definesArguments) schemaText += '// --- default\ntype Arguments = {};\n';
  const resolved = cedar.schemaToJsonWithResolvedTypes(schemaText);
  if (resolved.type === 'failure') {
    const issues = resolved.errors.map((e) => {
      const start = e.sourceLocations?.[0]?.start ?? 0;
      const seg = [...segments].reverse().find((s) => start >= s.start);
      if (seg === undefined) return { file: '(built-in schema)', line: 1, column: 1, message: e.message };
      return issuesOf([e], seg.file, seg.text, -seg.start)[0]!;
    });
    fail('POLICY_SCHEMA_INVALID', 'the schema fragments are invalid', issues);
  }
  const common = resolved.json['']?.commonTypes ?? {};
  const args = inlineCommonTypes(common['Arguments']!, common, 0);
  const argsFile = segments.find((s) => /\btype\s+Arguments\b/.test(s.text))?.file ?? '(built-in schema)';
  if (!('type' in args) || args.type !== 'Record') {
    fail('POLICY_SCHEMA_INVALID', 'the schema fragments are invalid', [{ file: argsFile, line: 1, column: 1, message: 'type Arguments must be a record, e.g. type Arguments = { amount?: Long };' }]);
  }
  const required = Object.entries((args as { attributes: Record<string, { required?: boolean }> }).attributes)
    .filter(([, t]) => t.required !== false)
    .map(([k]) => k);
  if (required.length > 0) {
    fail('POLICY_SCHEMA_INVALID', 'the schema fragments are invalid', [
      {
        file: argsFile,
        line: 1,
        column: 1,
        message: `every attribute of Arguments must be optional, since each tool has its own arguments: write ${required.map((k) => `${k}?`).join(', ')}`,
      },
    ]);
  }
  return { schemaText, argumentsType: args };
}

/**
 * Parses and validates a policy set from its source files: `*.cedar` policies
 * and optional `*.cedarschema` fragments (which may define `type Arguments`).
 * Loading fails on any error; validator warnings (such as a policy that can
 * never apply) are returned in `warnings`.
 * @throws PolicyError `POLICY_PARSE_ERROR`, `POLICY_INVALID`, `POLICY_SCHEMA_INVALID`,
 *   `POLICY_ANNOTATION_INVALID`, `POLICY_DUPLICATE_ID`, `POLICY_TEMPLATE_UNSUPPORTED`,
 *   each naming the file, line and column
 */
export function compilePolicySet(sources: readonly PolicySourceFile[]): CompiledPolicySet {
  const files = [...sources].sort((a, b) => compareNames(a.name, b.name));
  const { schemaText, argumentsType } = composeSchema(files.filter((f) => f.name.endsWith(SCHEMA_EXT)));

  const policies: LoadedPolicy[] = [];
  const offsets = new Map<string, { file: string; text: string; base: number }>();
  const parseIssues: PolicyIssue[] = [];
  const annotationIssues: PolicyIssue[] = [];
  const templateIssues: PolicyIssue[] = [];
  for (const f of files) {
    if (f.name.endsWith(SCHEMA_EXT)) continue;
    const text = normaliseText(f.text);
    const parts = cedar.policySetTextToParts(text);
    if (parts.type === 'failure') {
      parseIssues.push(...issuesOf(parts.errors, f.name, text));
      continue;
    }
    if (parts.policy_templates.length > 0) {
      templateIssues.push({ file: f.name, line: 1, column: 1, message: 'policy templates (?principal, ?resource slots) are not supported; write static policies' });
      continue;
    }
    let cursor = 0;
    parts.policies.forEach((ptext, i) => {
      const at = text.indexOf(ptext, cursor);
      const charStart = at >= 0 ? at : cursor;
      cursor = at >= 0 ? at + ptext.length : cursor;
      const base = byteLength(text.slice(0, charStart));
      const { line, column } = lineColumn(text, base);
      const json = cedar.policyToJson(ptext);
      if (json.type === 'failure') {
        parseIssues.push(...issuesOf(json.errors, f.name, text, base));
        return;
      }
      const ann = json.json.annotations ?? {};
      const id = ann['id'] ?? `${f.name}#${i + 1}`;
      const where = { file: f.name, line, column, policy: id };
      if (ann['id'] !== undefined && (ann['id'] === '' || ann['id'].length > MAX_ID)) {
        annotationIssues.push({ ...where, message: `@id must be 1-${MAX_ID} characters` });
      }
      const approval = ann['approval'];
      if (approval !== undefined && (approval !== 'required' || json.json.effect !== 'forbid')) {
        annotationIssues.push({
          ...where,
          message: '@approval("required") is only allowed on a forbid policy: it turns that forbid into "deny unless a human approves" (docs/policies.md, "Approvals")',
        });
      }
      offsets.set(id, { file: f.name, text, base });
      policies.push({ id, file: f.name, line, column, effect: json.json.effect, approval: approval === 'required', ...(ann['reason'] !== undefined ? { reason: ann['reason'] } : {}), text: ptext });
    });
  }
  if (parseIssues.length > 0) fail('POLICY_PARSE_ERROR', 'cannot parse the policies', parseIssues);
  if (templateIssues.length > 0) fail('POLICY_TEMPLATE_UNSUPPORTED', 'policy templates are not supported', templateIssues);
  const seen = new Map<string, LoadedPolicy>();
  const dupIssues: PolicyIssue[] = [];
  for (const p of policies) {
    const first = seen.get(p.id);
    if (first !== undefined) dupIssues.push({ file: p.file, line: p.line, column: p.column, policy: p.id, message: `the id ${p.id} is already used at ${first.file}:${first.line}:${first.column}` });
    else seen.set(p.id, p);
  }
  if (dupIssues.length > 0) fail('POLICY_DUPLICATE_ID', 'policy ids must be unique', dupIssues);
  if (annotationIssues.length > 0) fail('POLICY_ANNOTATION_INVALID', 'invalid policy annotations', annotationIssues);

  const staticPolicies = Object.fromEntries(policies.map((p) => [p.id, p.text]));
  const v = cedar.validate({ schema: schemaText, policies: { staticPolicies }, validationSettings: { mode: 'strict' } });
  const locate = (list: readonly { policyId: string; error: DetailedError }[]): PolicyIssue[] =>
    list.flatMap((e) => {
      const o = offsets.get(e.policyId);
      return o === undefined ? [{ file: '(policy set)', line: 1, column: 1, policy: e.policyId, message: e.error.message }] : issuesOf([e.error], o.file, o.text, o.base, e.policyId);
    });
  if (v.type === 'failure') fail('POLICY_INVALID', 'the policies do not validate against the schema', issuesOf(v.errors, '(policy set)', ''));
  if (v.validationErrors.length > 0) fail('POLICY_INVALID', 'the policies do not validate against the schema', locate(v.validationErrors));
  const warnings = [...locate(v.validationWarnings), ...issuesOf(v.otherWarnings, '(policy set)', '')];

  return {
    version: policySetVersion(files),
    canonicalText: canonicalPolicyText(files),
    files: files.map((f) => f.name),
    policies,
    warnings,
    schemaText,
    argumentsType,
  };
}
