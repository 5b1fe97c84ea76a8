package main

// Entries, commitments and disclosures, from docs/format.md ("Entries",
// "Commitments and disclosures").

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"
)

// Entry is a decoded, validated entry.
type Entry struct {
	Bytes  []byte
	Value  map[string]interface{}
	Digest string // base64url of the leaf hash
	Type   string

	HasSession bool
	SessionID  string
	Seq        int64
	Prev       *string // nil for JSON null
	Seal       *seal
}

type seal struct {
	Count int64
	Head  string
}

func entryDigest(entry []byte) string {
	h := tlog.RecordHash(entry)
	return encodeB64URL(h[:])
}

// parseEntry parses entry bytes: JSON, exactly their own JCS serialisation,
// and a valid v1 envelope.
func parseEntry(b []byte) (*Entry, error) {
	v, err := parseJSON(b)
	if err != nil {
		return nil, err
	}
	canon, err := canonicalJSON(v)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(canon, b) {
		return nil, errors.New("entry bytes are not the JCS (RFC 8785) serialisation of their parse")
	}
	obj, ok := v.(map[string]interface{})
	if !ok {
		return nil, errors.New("entry is not a JSON object")
	}
	e := &Entry{Bytes: b, Value: obj, Digest: entryDigest(b)}
	if err := validateEnvelope(obj, e); err != nil {
		return nil, fmt.Errorf("envelope: %v", err)
	}
	return e, nil
}

var (
	uuidRE      = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	tenantRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	sessionIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	nameRE      = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*$`)
	timeRE      = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$`)
	traceIDRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	spanIDRE    = regexp.MustCompile(`^[0-9a-f]{16}$`)
	flagsRE     = regexp.MustCompile(`^[0-9a-f]{2}$`)
)

var envelopeFields = map[string]bool{
	"v": true, "id": true, "tenant": true, "type": true, "time": true, "recordedAt": true,
	"session": true, "initiator": true, "actor": true, "chain": true, "workload": true,
	"cause": true, "trace": true, "tool": true, "decision": true, "approval": true,
	"credential": true, "seal": true, "data": true,
}

var fixedTypes = map[string]bool{
	"session.opened": true, "session.delegated": true, "session.closed": true,
	"session.revoked": true, "session.expired": true,
	"prompt.received": true, "model.output": true,
	"tool.requested": true, "policy.decided": true, "approval.requested": true,
	"approval.granted": true, "approval.denied": true, "approval.expired": true,
	"tool.completed": true, "tool.failed": true,
	"credential.issued": true, "credential.revoked": true, "credential.expired": true,
}

func validateEnvelope(o map[string]interface{}, e *Entry) error {
	for k := range o {
		if !envelopeFields[k] {
			return fmt.Errorf("unknown top-level field %q", k)
		}
	}
	if v, ok := o["v"].(float64); !ok || v != 1 {
		return errors.New("v must be 1")
	}
	if err := matchString(o, "id", uuidRE, true); err != nil {
		return err
	}
	if err := matchString(o, "tenant", tenantRE, true); err != nil {
		return err
	}
	typ, ok := o["type"].(string)
	if !ok {
		return errors.New("type must be a string")
	}
	e.Type = typ
	optionalSession := false
	switch {
	case fixedTypes[typ]:
	case strings.HasPrefix(typ, "admin.") && nameRE.MatchString(strings.TrimPrefix(typ, "admin.")),
		strings.HasPrefix(typ, "external.") && nameRE.MatchString(strings.TrimPrefix(typ, "external.")):
		optionalSession = true
	default:
		return fmt.Errorf("unknown event type %q", typ)
	}
	for _, f := range []string{"time", "recordedAt"} {
		if err := checkTime(o, f, true); err != nil {
			return err
		}
	}
	if _, ok := o["session"]; ok {
		if err := validateSession(o["session"], e); err != nil {
			return fmt.Errorf("session: %v", err)
		}
		if _, ok := o["initiator"]; !ok {
			return errors.New("initiator is required with session")
		}
	} else if !optionalSession {
		return fmt.Errorf("type %s requires session", typ)
	}
	if err := optPrincipal(o, "initiator"); err != nil {
		return err
	}
	if _, ok := o["actor"]; !ok {
		return errors.New("actor is required")
	}
	if err := optPrincipal(o, "actor"); err != nil {
		return err
	}
	if c, ok := o["chain"]; ok {
		arr, ok := c.([]interface{})
		if !ok {
			return errors.New("chain must be an array")
		}
		for i, l := range arr {
			lo, ok := l.(map[string]interface{})
			if !ok {
				return fmt.Errorf("chain[%d] must be an object", i)
			}
			if _, ok := lo["principal"]; !ok {
				return fmt.Errorf("chain[%d].principal is required", i)
			}
			if err := optPrincipal(lo, "principal"); err != nil {
				return fmt.Errorf("chain[%d]: %v", i, err)
			}
		}
	}
	if w, ok := o["workload"]; ok {
		if err := validateWorkload(w); err != nil {
			return fmt.Errorf("workload: %v", err)
		}
	}
	if c, ok := o["cause"]; ok {
		if _, ok := c.(string); !ok {
			return errors.New("cause must be a string")
		}
	}
	if t, ok := o["trace"]; ok {
		if err := validateTrace(t); err != nil {
			return fmt.Errorf("trace: %v", err)
		}
	}
	needs := func(field string) bool {
		switch field {
		case "tool":
			return strings.HasPrefix(typ, "tool.") || typ == "policy.decided"
		case "decision":
			return typ == "policy.decided"
		case "approval":
			return strings.HasPrefix(typ, "approval.")
		case "credential":
			return strings.HasPrefix(typ, "credential.")
		case "seal":
			return typ == "session.closed"
		}
		return false
	}
	for _, f := range []string{"tool", "decision", "approval", "credential", "seal"} {
		if _, ok := o[f]; !ok && needs(f) {
			return fmt.Errorf("type %s requires %s", typ, f)
		}
	}
	if t, ok := o["tool"]; ok {
		to, ok := t.(map[string]interface{})
		if !ok {
			return errors.New("tool must be an object")
		}
		if err := matchString(to, "name", nil, true); err != nil {
			return fmt.Errorf("tool: %v", err)
		}
	}
	if d, ok := o["decision"]; ok {
		if err := validateDecision(d); err != nil {
			return fmt.Errorf("decision: %v", err)
		}
	}
	if a, ok := o["approval"]; ok {
		if err := validateApproval(a); err != nil {
			return fmt.Errorf("approval: %v", err)
		}
	}
	if c, ok := o["credential"]; ok {
		co, ok := c.(map[string]interface{})
		if !ok {
			return errors.New("credential must be an object")
		}
		if err := matchString(co, "jti", nil, true); err != nil {
			return fmt.Errorf("credential: %v", err)
		}
		if err := matchString(co, "fingerprint", nil, true); err != nil {
			return fmt.Errorf("credential: %v", err)
		}
		for _, f := range []string{"issuedAt", "expiresAt"} {
			if err := checkTime(co, f, false); err != nil {
				return fmt.Errorf("credential: %v", err)
			}
		}
	}
	if s, ok := o["seal"]; ok {
		so, ok := s.(map[string]interface{})
		if !ok {
			return errors.New("seal must be an object")
		}
		count, ok := asInt(so["count"])
		head, ok2 := so["head"].(string)
		if !ok || !ok2 || count < 1 || !isDigest(head) {
			return errors.New("seal must be { count: positive integer, head: digest }")
		}
		e.Seal = &seal{Count: count, Head: head}
	}
	if d, ok := o["data"]; ok {
		if _, ok := d.(map[string]interface{}); !ok {
			return errors.New("data must be an object")
		}
	}
	return checkCommitmentShapes(o, "")
}

// isDigest reports whether s is base64url (unpadded) of 32 bytes.
func isDigest(s string) bool {
	b, err := decodeB64URL(s)
	return err == nil && len(b) == 32
}

// checkCommitmentShapes rejects any object carrying "$commitment" that is not
// exactly { "$commitment": <digest> }.
func checkCommitmentShapes(v interface{}, path string) error {
	switch c := v.(type) {
	case map[string]interface{}:
		if d, has := c["$commitment"]; has {
			s, ok := d.(string)
			if len(c) != 1 || !ok || !isDigest(s) {
				return fmt.Errorf("%s is not a commitment object { \"$commitment\": digest }", path)
			}
			return nil
		}
		for k, e := range c {
			if err := checkCommitmentShapes(e, path+"/"+k); err != nil {
				return err
			}
		}
	case []interface{}:
		for i, e := range c {
			if err := checkCommitmentShapes(e, path+"/"+strconv.Itoa(i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func asInt(v interface{}) (int64, bool) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

func matchString(o map[string]interface{}, field string, re *regexp.Regexp, required bool) error {
	v, present := o[field]
	if !present {
		if required {
			return fmt.Errorf("%s is required", field)
		}
		return nil
	}
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("%s must be a string", field)
	}
	if re != nil && !re.MatchString(s) {
		return fmt.Errorf("%s %q is malformed", field, s)
	}
	return nil
}

func checkTime(o map[string]interface{}, field string, required bool) error {
	if err := matchString(o, field, timeRE, required); err != nil {
		return err
	}
	if s, ok := o[field].(string); ok {
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("%s: %v", field, err)
		}
	}
	return nil
}

func validateSession(v interface{}, e *Entry) error {
	s, ok := v.(map[string]interface{})
	if !ok {
		return errors.New("must be an object")
	}
	if err := matchString(s, "id", sessionIDRE, true); err != nil {
		return err
	}
	seq, ok := asInt(s["seq"])
	if !ok || seq < 1 {
		return errors.New("seq must be an integer >= 1")
	}
	prevV, present := s["prev"]
	if !present {
		return errors.New("prev is required")
	}
	e.HasSession, e.SessionID, e.Seq = true, s["id"].(string), seq
	switch p := prevV.(type) {
	case nil:
		if seq != 1 {
			return errors.New("prev is null but seq is not 1")
		}
	case string:
		if seq == 1 {
			return errors.New("prev must be null when seq is 1")
		}
		if !isDigest(p) {
			return errors.New("prev is not a base64url SHA-256 digest")
		}
		e.Prev = &p
	default:
		return errors.New("prev must be a string or null")
	}
	if err := matchString(s, "parent", nil, false); err != nil {
		return err
	}
	return matchString(s, "objective", nil, false)
}

var principalTypes = map[string]bool{"human": true, "agent": true, "workload": true, "service": true}

func optPrincipal(o map[string]interface{}, field string) error {
	v, ok := o[field]
	if !ok {
		return nil
	}
	p, ok := v.(map[string]interface{})
	if !ok {
		return fmt.Errorf("%s must be an object", field)
	}
	if t, _ := p["type"].(string); !principalTypes[t] {
		return fmt.Errorf("%s.type must be human, agent, workload or service", field)
	}
	id, ok := p["id"].(string)
	if !ok || id == "" || utf8.RuneCountInString(id) > 512 {
		return fmt.Errorf("%s.id must be a non-empty string of at most 512 characters", field)
	}
	for _, f := range []string{"issuer", "name"} {
		if err := matchString(p, f, nil, false); err != nil {
			return fmt.Errorf("%s.%v", field, err)
		}
	}
	if vv, ok := p["verified"]; ok {
		if _, ok := vv.(bool); !ok {
			return fmt.Errorf("%s.verified must be a boolean", field)
		}
	}
	return nil
}

var workloadMethods = map[string]bool{"jwt-svid": true, "x509-svid": true, "oidc": true, "api-key": true, "unverified": true}

func validateWorkload(v interface{}) error {
	w, ok := v.(map[string]interface{})
	if !ok {
		return errors.New("must be an object")
	}
	if m, _ := w["method"].(string); !workloadMethods[m] {
		return errors.New("unknown method")
	}
	if _, ok := w["verified"].(bool); !ok {
		return errors.New("verified must be a boolean")
	}
	_, hasSpiffe := w["spiffeId"]
	_, hasSubject := w["subject"]
	if !hasSpiffe && !hasSubject {
		return errors.New("needs spiffeId or subject")
	}
	if hasSpiffe {
		if s, ok := w["spiffeId"].(string); !ok || !strings.HasPrefix(s, "spiffe://") {
			return errors.New("spiffeId must start with spiffe://")
		}
	}
	return nil
}

func validateTrace(v interface{}) error {
	t, ok := v.(map[string]interface{})
	if !ok {
		return errors.New("must be an object")
	}
	if err := matchString(t, "traceId", traceIDRE, true); err != nil {
		return err
	}
	if err := matchString(t, "spanId", spanIDRE, true); err != nil {
		return err
	}
	if strings.Trim(t["traceId"].(string), "0") == "" || strings.Trim(t["spanId"].(string), "0") == "" {
		return errors.New("all-zero trace or span id")
	}
	if err := matchString(t, "flags", flagsRE, false); err != nil {
		return err
	}
	return matchString(t, "state", nil, false)
}

func validateDecision(v interface{}) error {
	d, ok := v.(map[string]interface{})
	if !ok {
		return errors.New("must be an object")
	}
	switch d["effect"] {
	case "allow", "deny", "approval_required":
	default:
		return errors.New("effect must be allow, deny or approval_required")
	}
	if err := matchString(d, "policyVersion", nil, true); err != nil {
		return err
	}
	for _, f := range []string{"policies", "reasons"} {
		if _, ok := d[f].([]interface{}); !ok {
			return fmt.Errorf("%s must be an array", f)
		}
	}
	if err := checkTime(d, "evaluatedAt", false); err != nil {
		return err
	}
	if ms, ok := d["durationMs"]; ok {
		if _, ok := ms.(float64); !ok {
			return errors.New("durationMs must be a number")
		}
	}
	return nil
}

func validateApproval(v interface{}) error {
	a, ok := v.(map[string]interface{})
	if !ok {
		return errors.New("must be an object")
	}
	if err := matchString(a, "id", nil, true); err != nil {
		return err
	}
	if s, ok := a["status"]; ok {
		switch s {
		case "pending", "granted", "denied", "expired":
		default:
			return errors.New("unknown status")
		}
	}
	if err := optPrincipal(a, "approver"); err != nil {
		return err
	}
	if s, ok := a["source"]; ok {
		if _, ok := s.(map[string]interface{}); !ok {
			return errors.New("source must be an object")
		}
	}
	return checkTime(a, "expiresAt", false)
}

// Disclosure is a decoded disclosure.
type Disclosure struct {
	Raw    string
	Digest string
	Salt   string
	Path   string
	Value  interface{}
}

// decodeDisclosure decodes base64url(JCS([salt, path, value])).
func decodeDisclosure(d string) (*Disclosure, error) {
	raw, err := decodeB64URL(d)
	if err != nil {
		return nil, fmt.Errorf("disclosure is not base64url: %v", err)
	}
	v, err := parseJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("disclosure: %v", err)
	}
	arr, ok := v.([]interface{})
	if !ok || len(arr) != 3 {
		return nil, errors.New("disclosure is not a JSON array of three elements")
	}
	salt, ok1 := arr[0].(string)
	path, ok2 := arr[1].(string)
	if !ok1 || !ok2 {
		return nil, errors.New("disclosure salt and path must be strings")
	}
	sb, err := decodeB64URL(salt)
	if err != nil {
		return nil, fmt.Errorf("salt is not base64url: %v", err)
	}
	if len(sb) < 16 {
		return nil, fmt.Errorf("salt is %d bytes, want at least 16", len(sb))
	}
	if _, err := splitPointer(path); err != nil {
		return nil, err
	}
	return &Disclosure{Raw: d, Digest: digestOf(d), Salt: salt, Path: path, Value: arr[2]}, nil
}

// splitPointer parses an RFC 6901 JSON Pointer into reference tokens.
func splitPointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("JSON pointer %q does not start with /", p)
	}
	parts := strings.Split(p[1:], "/")
	for i, t := range parts {
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 >= len(t) || (t[j+1] != '0' && t[j+1] != '1')) {
				return nil, fmt.Errorf("JSON pointer %q has a bad ~ escape", p)
			}
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

var arrayIndexRE = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

func resolvePointer(doc interface{}, p string) (interface{}, bool) {
	toks, err := splitPointer(p)
	if err != nil {
		return nil, false
	}
	cur := doc
	for _, t := range toks {
		switch c := cur.(type) {
		case map[string]interface{}:
			v, ok := c[t]
			if !ok {
				return nil, false
			}
			cur = v
		case []interface{}:
			if !arrayIndexRE.MatchString(t) {
				return nil, false
			}
			i, err := strconv.Atoi(t)
			if err != nil || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// commitmentDigest reports whether v is a commitment object, exactly
// {"$commitment": "<digest>"}, and returns its digest.
func commitmentDigest(v interface{}) (string, bool) {
	o, ok := v.(map[string]interface{})
	if !ok || len(o) != 1 {
		return "", false
	}
	d, ok := o["$commitment"].(string)
	return d, ok
}

// openDisclosure checks that d opens a commitment in the entry.
func openDisclosure(entry interface{}, d *Disclosure) error {
	target, ok := resolvePointer(entry, d.Path)
	if !ok {
		return fmt.Errorf("path %s does not exist in the entry", d.Path)
	}
	digest, ok := commitmentDigest(target)
	if !ok {
		return fmt.Errorf("path %s is not a commitment", d.Path)
	}
	if digest != d.Digest {
		return fmt.Errorf("commitment at %s is %s, disclosure digest is %s", d.Path, digest, d.Digest)
	}
	return nil
}

// findCommitments lists the JSON Pointers of every commitment object in v.
func findCommitments(v interface{}, path string, out *[]string) {
	if _, ok := commitmentDigest(v); ok {
		*out = append(*out, path)
		return
	}
	switch c := v.(type) {
	case map[string]interface{}:
		for k, e := range c {
			findCommitments(e, path+"/"+strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"), out)
		}
	case []interface{}:
		for i, e := range c {
			findCommitments(e, path+"/"+strconv.Itoa(i), out)
		}
	}
}
