package main

// The `vectors` subcommand: check test-vectors/v1/<format>/<case>.json.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Codes for which a bundle vector's expectedError must be reproduced exactly.
var strictCodes = map[string]bool{
	codeKeyMismatch: true, codeSignatureInvalid: true, codeProofInclusion: true,
	codeDisclosureMismatch: true, codeChainGap: true,
}

type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

func skip(format string, args ...interface{}) error {
	return &skipError{fmt.Sprintf(format, args...)}
}

type vectorResult int

const (
	resultPass vectorResult = iota
	resultFail
	resultSkip
)

// runVectors walks dir and prints one line per file. It returns the counts.
func runVectors(dir string, out io.Writer, verbose bool) (passed, failed, skipped int, err error) {
	var files []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return 0, 0, 0, err
	}
	sort.Strings(files)
	for _, p := range files {
		res, msg := checkVectorFile(dir, p)
		switch res {
		case resultPass:
			passed++
			if msg != "" && verbose {
				fmt.Fprintf(out, "ok %s (%s)\n", p, msg)
			} else {
				fmt.Fprintf(out, "ok %s\n", p)
			}
		case resultFail:
			failed++
			fmt.Fprintf(out, "FAIL %s: %s\n", p, msg)
		case resultSkip:
			skipped++
			fmt.Fprintf(out, "skip %s: %s\n", p, msg)
		}
	}
	fmt.Fprintf(out, "interop: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	return passed, failed, skipped, nil
}

func checkVectorFile(root, p string) (vectorResult, string) {
	rel, _ := filepath.Rel(root, p)
	parts := strings.Split(filepath.ToSlash(rel), "/")
	base := filepath.Base(p)
	switch {
	case base == "manifest.json" || base == "keys.json":
		return resultSkip, "metadata, not a vector"
	case !strings.HasSuffix(base, ".json"):
		return resultSkip, "not a JSON file"
	case len(parts) < 2:
		return resultSkip, "not in a format folder"
	}
	folder := parts[0]
	if folder == "canonical-json" {
		return resultSkip, "canonical-json: not checked (no RFC 8785 library in Go)"
	}
	handlers := map[string]func(in, exp map[string]interface{}) error{
		"merkle":     vecMerkle,
		"note":       vecNote,
		"checkpoint": vecCheckpoint,
		"receipt":    vecReceipt,
		"commitment": vecCommitment,
		"bundle":     vecBundle,
		"envelope":   vecEnvelope,
	}
	h, ok := handlers[folder]
	if !ok {
		return resultSkip, fmt.Sprintf("format folder %q not understood", folder)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		return resultFail, err.Error()
	}
	doc, err := parseJSON(raw)
	if err != nil {
		return resultFail, "vector file: " + err.Error()
	}
	vec, ok := doc.(map[string]interface{})
	if !ok {
		return resultSkip, "not a vector object"
	}
	in, _ := vec["input"].(map[string]interface{})
	if in == nil {
		return resultSkip, "no input object"
	}
	exp, _ := vec["expected"].(map[string]interface{})
	wantErr, hasErr := vec["expectedError"].(string)
	if exp != nil {
		if valid, ok := exp["valid"].(bool); ok && !valid {
			hasErr, exp = true, nil
		}
	}
	switch {
	case hasErr:
		err := h(in, nil)
		var se *skipError
		switch {
		case errors.As(err, &se):
			return resultSkip, se.reason
		case err == nil:
			return resultFail, fmt.Sprintf("accepted, but expected rejection with %s", wantErr)
		}
		got := codeOf(err)
		all := allCodes(err)
		if folder == "bundle" && len(all) > 0 && !contains(all, wantErr) && strictCodes[wantErr] {
			return resultFail, fmt.Sprintf("rejected with %s, expected %s: %v", strings.Join(all, ","), wantErr, err)
		}
		if len(all) > 1 {
			got = strings.Join(all, ",")
		}
		if got == "" {
			got = "no code"
		}
		return resultPass, fmt.Sprintf("rejected: %s; expected %s: %v", got, wantErr, err)
	case exp != nil:
		err := h(in, exp)
		var se *skipError
		if errors.As(err, &se) {
			return resultSkip, se.reason
		}
		if err != nil {
			return resultFail, err.Error()
		}
		return resultPass, ""
	}
	return resultSkip, "neither expected nor expectedError"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ---- helpers for tolerant field access ----

func str(m map[string]interface{}, keys ...string) (string, bool) {
	for _, k := range keys {
		if s, ok := m[k].(string); ok {
			return s, true
		}
	}
	return "", false
}

func num(m map[string]interface{}, keys ...string) (int64, bool) {
	for _, k := range keys {
		switch v := m[k].(type) {
		case float64:
			if n, ok := asInt(v); ok {
				return n, true
			}
		case string:
			if n, err := parseDecimal(v); err == nil {
				return n, true
			}
		}
	}
	return 0, false
}

// hashAny decodes a hash written as lowercase hex (test vectors) or base64.
func hashAny(s string) (tlog.Hash, error) {
	var b []byte
	var err error
	if isLowerHex(s) {
		b, err = decodeHex(s)
	} else {
		b, err = decodeB64(s)
	}
	if err != nil {
		return tlog.Hash{}, err
	}
	if len(b) != 32 {
		return tlog.Hash{}, fmt.Errorf("hash is %d bytes", len(b))
	}
	var h tlog.Hash
	copy(h[:], b)
	return h, nil
}

func isLowerHex(s string) bool {
	if len(s) == 0 || len(s)%2 != 0 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func hashesAny(v interface{}) ([]tlog.Hash, error) {
	arr, ok := v.([]interface{})
	if !ok {
		return nil, errors.New("proof is not an array")
	}
	out := make([]tlog.Hash, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("proof[%d] is not a string", i)
		}
		h, err := hashAny(s)
		if err != nil {
			return nil, fmt.Errorf("proof[%d]: %v", i, err)
		}
		out = append(out, h)
	}
	return out, nil
}

func verifiersOf(in map[string]interface{}) (note.Verifiers, note.Verifier, error) {
	var keys []string
	if k, ok := str(in, "verifierKey", "vkey", "key"); ok {
		keys = append(keys, k)
	}
	if arr, ok := in["verifierKeys"].([]interface{}); ok {
		for _, k := range arr {
			if s, ok := k.(string); ok {
				keys = append(keys, s)
			}
		}
	}
	if len(keys) == 0 {
		return nil, nil, skip("no verifierKey in input")
	}
	var vs []note.Verifier
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, nil, coded(codeVerifierKeyInvalid, "verifier key %q: %v", k, err)
		}
		vs = append(vs, v)
	}
	return note.VerifierList(vs...), vs[0], nil
}

// ---- merkle ----

func vecMerkle(in, exp map[string]interface{}) error {
	tree := &merkleTree{}
	hasLeaves := false
	if leaves, ok := in["leaves"].([]interface{}); ok {
		hasLeaves = true
		for i, l := range leaves {
			s, ok := l.(string)
			if !ok {
				return fmt.Errorf("leaves[%d] is not a string", i)
			}
			b, err := decodeHex(s)
			if err != nil {
				return fmt.Errorf("leaves[%d]: %v", i, err)
			}
			if err := tree.add(tlog.RecordHash(b)); err != nil {
				return err
			}
		}
	}
	rootOf := func(size int64) (tlog.Hash, error) {
		if !hasLeaves {
			return tlog.Hash{}, errors.New("no root given and no leaves")
		}
		return tree.root(size)
	}
	did := false

	// Single-proof shapes.
	if _, ok := in["proof"]; ok {
		did = true
		proof, err := hashesAny(in["proof"])
		if err != nil {
			return coded(codeProofMalformed, "%v", err)
		}
		if from, ok := num(in, "from", "first", "oldSize"); ok {
			to, ok := num(in, "to", "second", "newSize")
			if !ok {
				return skip("consistency vector without to")
			}
			oldRoot, newRoot, err := rootsFor(in, rootOf, from, to)
			if err != nil {
				return err
			}
			if err := checkConsistency(proof, from, oldRoot, to, newRoot); err != nil {
				return coded(codeProofConsistency, "%v", err)
			}
		} else {
			index, ok1 := num(in, "index", "leafIndex")
			size, ok2 := num(in, "size", "treeSize")
			if !ok1 || !ok2 {
				return skip("inclusion vector without index/size")
			}
			var leaf tlog.Hash
			if s, ok := str(in, "leafHash"); ok {
				if leaf, err = hashAny(s); err != nil {
					return coded(codeProofMalformed, "leafHash: %v", err)
				}
			} else if s, ok := str(in, "leaf"); ok {
				b, err := decodeHex(s)
				if err != nil {
					return coded(codeProofMalformed, "leaf: %v", err)
				}
				leaf = tlog.RecordHash(b)
			} else if hasLeaves && index >= 0 && index < tree.n {
				hs, _ := tree.ReadHashes([]int64{tlog.StoredHashIndex(0, index)})
				leaf = hs[0]
			} else {
				return skip("inclusion vector without leaf")
			}
			var root tlog.Hash
			if s, ok := str(in, "root", "rootHash"); ok {
				if root, err = hashAny(s); err != nil {
					return coded(codeProofMalformed, "root: %v", err)
				}
			} else if root, err = rootOf(size); err != nil {
				return err
			}
			if err := checkInclusion(proof, size, root, index, leaf); err != nil {
				return coded(codeProofInclusion, "%v", err)
			}
		}
	}
	if exp == nil {
		if !did {
			return skip("negative merkle vector of an unknown shape")
		}
		return nil
	}
	if v, ok := exp["valid"].(bool); ok && v && did {
		return nil
	}

	// Tree-shaped expectations.
	if lhs, ok := exp["leafHashes"].([]interface{}); ok {
		did = true
		if !hasLeaves || int64(len(lhs)) != tree.n {
			return fmt.Errorf("leafHashes: %d hashes for %d leaves", len(lhs), tree.n)
		}
		for i, lv := range lhs {
			s, _ := lv.(string)
			want, err := hashAny(s)
			if err != nil {
				return fmt.Errorf("leafHashes[%d]: %v", i, err)
			}
			hs, _ := tree.ReadHashes([]int64{tlog.StoredHashIndex(0, int64(i))})
			if hs[0] != want {
				return fmt.Errorf("leaf hash %d: computed %x, vector has %x", i, hs[0][:], want[:])
			}
		}
	}
	if roots, ok := exp["roots"].(map[string]interface{}); ok {
		did = true
		for k, rv := range roots {
			size, err := parseDecimal(k)
			if err != nil {
				return fmt.Errorf("roots key %q: %v", k, err)
			}
			s, _ := rv.(string)
			want, err := hashAny(s)
			if err != nil {
				return fmt.Errorf("roots[%s]: %v", k, err)
			}
			got, err := rootOf(size)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("root of size %d: computed %x, vector has %x", size, got[:], want[:])
			}
		}
	}
	if incl, ok := exp["inclusion"].([]interface{}); ok {
		did = true
		for i, iv := range incl {
			c, _ := iv.(map[string]interface{})
			index, ok1 := num(c, "index", "leafIndex")
			size, ok2 := num(c, "size", "treeSize")
			if !ok1 || !ok2 || !hasLeaves || index < 0 || index >= tree.n {
				return fmt.Errorf("inclusion[%d]: bad index/size", i)
			}
			proof, err := hashesAny(c["proof"])
			if err != nil {
				return fmt.Errorf("inclusion[%d]: %v", i, err)
			}
			root, err := rootOf(size)
			if err != nil {
				return err
			}
			hs, _ := tree.ReadHashes([]int64{tlog.StoredHashIndex(0, index)})
			if err := checkInclusion(proof, size, root, index, hs[0]); err != nil {
				return fmt.Errorf("inclusion[%d]: %v", i, err)
			}
		}
	}
	if cons, ok := exp["consistency"].([]interface{}); ok {
		did = true
		for i, cv := range cons {
			c, _ := cv.(map[string]interface{})
			from, ok1 := num(c, "from", "first", "oldSize")
			to, ok2 := num(c, "to", "second", "newSize")
			if !ok1 || !ok2 {
				return fmt.Errorf("consistency[%d]: bad from/to", i)
			}
			proof, err := hashesAny(c["proof"])
			if err != nil {
				return fmt.Errorf("consistency[%d]: %v", i, err)
			}
			oldRoot, err1 := rootOf(from)
			newRoot, err2 := rootOf(to)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("consistency[%d]: %v %v", i, err1, err2)
			}
			if err := checkConsistency(proof, from, oldRoot, to, newRoot); err != nil {
				return fmt.Errorf("consistency[%d]: %v", i, err)
			}
		}
	}
	if !did {
		return skip("merkle vector of an unknown shape")
	}
	return nil
}

func rootsFor(in map[string]interface{}, rootOf func(int64) (tlog.Hash, error), from, to int64) (oldRoot, newRoot tlog.Hash, err error) {
	if s, ok := str(in, "oldRoot", "firstRoot"); ok {
		if oldRoot, err = hashAny(s); err != nil {
			return oldRoot, newRoot, coded(codeProofMalformed, "oldRoot: %v", err)
		}
	} else if oldRoot, err = rootOf(from); err != nil {
		return oldRoot, newRoot, err
	}
	if s, ok := str(in, "newRoot", "secondRoot", "root"); ok {
		if newRoot, err = hashAny(s); err != nil {
			return oldRoot, newRoot, coded(codeProofMalformed, "newRoot: %v", err)
		}
	} else if newRoot, err = rootOf(to); err != nil {
		return oldRoot, newRoot, err
	}
	return oldRoot, newRoot, nil
}

// ---- note ----

func vecNote(in, exp map[string]interface{}) error {
	msg, ok := str(in, "note")
	if !ok {
		return skip("no note in input")
	}
	vs, _, err := verifiersOf(in)
	if err != nil {
		return err
	}
	n, err := note.Open([]byte(msg), vs)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return coded(codeKeyMismatch, "%v", err)
		case errors.As(err, &invalid):
			return coded(codeSignatureInvalid, "%v", err)
		}
		return coded("NOTE_MALFORMED", "%v", err) // a code the doc does not name
	}
	if exp == nil {
		return nil
	}
	if want, ok := str(exp, "text"); ok && want != n.Text {
		return fmt.Errorf("note text %q, vector expects %q", n.Text, want)
	}
	return nil
}

// ---- checkpoint ----

func vecCheckpoint(in, exp map[string]interface{}) error {
	msg, ok := str(in, "checkpoint", "note")
	if !ok {
		return skip("no checkpoint in input")
	}
	_, v, err := verifiersOf(in)
	if err != nil {
		return err
	}
	cp, err := openCheckpoint([]byte(msg), v)
	if err != nil {
		return err
	}
	if exp == nil {
		return nil
	}
	return compareCheckpoint(cp, exp, "")
}

func compareCheckpoint(cp *Checkpoint, exp map[string]interface{}, index string) error {
	if want, ok := str(exp, "origin"); ok && want != cp.Origin {
		return fmt.Errorf("origin %q, vector expects %q", cp.Origin, want)
	}
	if want, ok := num(exp, "size", "treeSize"); ok && want != cp.Size {
		return fmt.Errorf("size %d, vector expects %d", cp.Size, want)
	}
	if want, ok := str(exp, "rootHash", "root"); ok {
		h, err := hashAny(want)
		if err != nil {
			return fmt.Errorf("vector rootHash: %v", err)
		}
		if h != cp.Root {
			return fmt.Errorf("root %x, vector expects %x", cp.Root[:], h[:])
		}
	}
	return nil
}

// ---- receipt ----

func vecReceipt(in, exp map[string]interface{}) error {
	es, ok1 := str(in, "entry")
	ps, ok2 := str(in, "proof", "receipt")
	if !ok1 || !ok2 {
		return skip("receipt vector without entry/proof")
	}
	entry, err := decodeB64(es)
	if err != nil {
		return coded(codeEntryMalformed, "entry is not base64: %v", err)
	}
	_, v, err := verifiersOf(in)
	if err != nil {
		return err
	}
	r, cp, err := verifyReceipt(entry, []byte(ps), v)
	if err != nil {
		return err
	}
	if exp == nil {
		return nil
	}
	if want, ok := num(exp, "index"); ok && want != r.Index {
		return fmt.Errorf("index %d, vector expects %d", r.Index, want)
	}
	return compareCheckpoint(cp, exp, "")
}

// ---- commitment ----

func vecCommitment(in, exp map[string]interface{}) error {
	ds, ok := str(in, "disclosure")
	if !ok {
		return skip("commitment vector without disclosure")
	}
	d, err := decodeDisclosure(ds)
	if err != nil {
		return coded(codeDisclosureMalformed, "%v", err)
	}
	if want, ok := str(in, "digest", "commitment"); ok && want != d.Digest {
		return coded(codeDisclosureMismatch, "digest %s, input commitment %s", d.Digest, want)
	}
	if ev, present := in["entry"]; present {
		var entry interface{}
		switch t := ev.(type) {
		case map[string]interface{}:
			entry = t
		case string:
			b, err := decodeB64(t)
			if err != nil {
				b = []byte(t)
			}
			if entry, err = parseJSON(b); err != nil {
				return coded(codeEntryMalformed, "entry: %v", err)
			}
		default:
			return skip("entry of unknown form")
		}
		if err := openDisclosure(entry, d); err != nil {
			return coded(codeDisclosureMismatch, "%v", err)
		}
	}
	if exp == nil {
		return nil
	}
	if want, ok := str(exp, "digest"); ok && want != d.Digest {
		return fmt.Errorf("digest %s, vector expects %s", d.Digest, want)
	}
	if want, ok := str(exp, "salt"); ok && want != d.Salt {
		return fmt.Errorf("salt %s, vector expects %s", d.Salt, want)
	}
	if want, ok := str(exp, "path"); ok && want != d.Path {
		return fmt.Errorf("path %s, vector expects %s", d.Path, want)
	}
	if want, ok := exp["value"]; ok && !jsonValueEqual(want, d.Value) {
		return fmt.Errorf("value %v, vector expects %v", d.Value, want)
	}
	return nil
}

// ---- envelope ----

func vecEnvelope(in, exp map[string]interface{}) error {
	env, ok := in["envelope"].(map[string]interface{})
	if !ok {
		return skip("no envelope object in input")
	}
	if err := validateEnvelope(env, &Entry{}); err != nil {
		return coded(codeEntryMalformed, "%v", err)
	}
	return nil
}

// ---- bundle ----

func vecBundle(in, exp map[string]interface{}) error {
	var b map[string]interface{}
	switch t := in["bundle"].(type) {
	case map[string]interface{}:
		b = t
	case string:
		v, err := parseJSON([]byte(t))
		if err != nil {
			return coded(codeBundleMalformed, "bundle: %v", err)
		}
		if b, _ = v.(map[string]interface{}); b == nil {
			return coded(codeBundleMalformed, "bundle is not an object")
		}
	default:
		return skip("no bundle in input")
	}
	vkey, ok := str(in, "verifierKey")
	if !ok {
		return skip("no pinned verifierKey in input")
	}
	rep := verifyBundle(b, vkey)
	if rep.Verdict == "failed" {
		var lines []string
		for _, f := range rep.Failures {
			lines = append(lines, f.String())
		}
		codes := rep.Codes()
		return &codedError{Code: codes[0], All: codes, Err: errors.New(strings.Join(lines, "; "))}
	}
	if exp == nil {
		return nil
	}
	if want, ok := str(exp, "verdict"); ok && want != rep.Verdict {
		return fmt.Errorf("verdict %s, vector expects %s", rep.Verdict, want)
	}
	if want, ok := num(exp, "records"); ok && want != int64(rep.Records) {
		return fmt.Errorf("%d records, vector expects %d", rep.Records, want)
	}
	return nil
}
