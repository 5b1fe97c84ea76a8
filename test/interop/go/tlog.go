package main

// Checkpoints, receipts and Merkle helpers, from docs/format.md ("The log,
// checkpoints and receipts"), C2SP tlog-checkpoint, C2SP tlog-proof and RFC 6962.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Error codes named by docs/format.md, plus a few of our own for conditions
// the doc does not name (marked "ours").
const (
	codeKeyMismatch         = "KEY_MISMATCH"
	codeSignatureInvalid    = "SIGNATURE_INVALID"
	codeCheckpointAltered   = "CHECKPOINT_ALTERED"
	codeOriginMismatch      = "ORIGIN_MISMATCH"
	codeEntryMalformed      = "ENTRY_MALFORMED"
	codeProofMalformed      = "PROOF_MALFORMED"
	codeProofCheckpoint     = "PROOF_CHECKPOINT_INVALID"
	codeProofConsistency    = "PROOF_CONSISTENCY_FAILED"
	codeEntryTampered       = "ENTRY_TAMPERED"
	codeProofInclusion      = "PROOF_INCLUSION_FAILED"
	codeDisclosureMalformed = "DISCLOSURE_MALFORMED"
	codeDisclosureMismatch  = "DISCLOSURE_MISMATCH"
	codeChainGap            = "CHAIN_GAP"
	codeChainOrder          = "CHAIN_ORDER"
	codeChainLink           = "CHAIN_LINK_MISMATCH"
	codeChainSeal           = "CHAIN_SEAL_MISMATCH"
	codeChainExtra          = "CHAIN_EXTRA"
	codeCheckpointMalformed = "CHECKPOINT_MALFORMED" // ours
	codeBundleMalformed     = "BUNDLE_MALFORMED"     // ours
	codeVerifierKeyInvalid  = "VERIFIER_KEY_INVALID" // ours
)

// codedError carries one of the codes above.
type codedError struct {
	Code string
	All  []string // every code, when there are several (bundles)
	Err  error
}

func (e *codedError) Error() string { return e.Code + ": " + e.Err.Error() }

func coded(code string, format string, args ...interface{}) *codedError {
	return &codedError{Code: code, Err: fmt.Errorf(format, args...)}
}

// codeOf extracts the code of err, or "" when it carries none.
func codeOf(err error) string {
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

// allCodes returns every code err carries.
func allCodes(err error) []string {
	var ce *codedError
	if !errors.As(err, &ce) {
		return nil
	}
	if len(ce.All) > 0 {
		return ce.All
	}
	return []string{ce.Code}
}

// Checkpoint is a verified, parsed checkpoint.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	Text   string // the signed note text (body)
	Raw    []byte // the whole note
}

var decimalRE = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

func parseDecimal(s string) (int64, error) {
	if !decimalRE.MatchString(s) {
		return 0, fmt.Errorf("not a canonical decimal: %q", s)
	}
	return strconv.ParseInt(s, 10, 64)
}

func parseHash64(s string) (tlog.Hash, error) {
	b, err := decodeB64(s)
	if err != nil {
		return tlog.Hash{}, err
	}
	if len(b) != tlog.HashSize {
		return tlog.Hash{}, fmt.Errorf("hash is %d bytes, want 32", len(b))
	}
	var h tlog.Hash
	copy(h[:], b)
	return h, nil
}

// parseCheckpointBody parses the note text of a Custody checkpoint: exactly
// three lines (origin, decimal size, base64 root), no extension lines.
func parseCheckpointBody(text string) (origin string, size int64, root tlog.Hash, err error) {
	if !strings.HasSuffix(text, "\n") {
		return "", 0, root, errors.New("checkpoint text does not end in newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 3 {
		return "", 0, root, fmt.Errorf("checkpoint has %d lines, want exactly 3", len(lines))
	}
	origin = lines[0]
	if origin == "" {
		return "", 0, root, errors.New("empty origin")
	}
	size, err = parseDecimal(lines[1])
	if err != nil {
		return "", 0, root, fmt.Errorf("tree size: %v", err)
	}
	root, err = parseHash64(lines[2])
	if err != nil {
		return "", 0, root, fmt.Errorf("root hash: %v", err)
	}
	return origin, size, root, nil
}

// openCheckpoint verifies a checkpoint note with v and parses it. Errors carry
// KEY_MISMATCH, SIGNATURE_INVALID, CHECKPOINT_MALFORMED or ORIGIN_MISMATCH.
func openCheckpoint(msg []byte, v note.Verifier) (*Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return nil, coded(codeKeyMismatch, "no signature by %s+%08x", v.Name(), v.KeyHash())
		case errors.As(err, &invalid):
			return nil, coded(codeSignatureInvalid, "%v", err)
		default:
			return nil, coded(codeCheckpointMalformed, "%v", err)
		}
	}
	origin, size, root, err := parseCheckpointBody(n.Text)
	if err != nil {
		return nil, coded(codeCheckpointMalformed, "%v", err)
	}
	if origin != v.Name() {
		return nil, coded(codeOriginMismatch, "origin %q != key name %q", origin, v.Name())
	}
	return &Checkpoint{Origin: origin, Size: size, Root: root, Text: n.Text, Raw: msg}, nil
}

// signatureFor returns the base64 signature on the note msg by the key of v,
// without verifying it ("" if none). Used to recognise CHECKPOINT_ALTERED.
func signatureFor(msg []byte, v note.Verifier) (text, sig string) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return "", ""
	}
	text = string(msg[:i+1])
	for _, line := range strings.Split(string(msg[i+2:]), "\n") {
		rest := strings.TrimPrefix(line, "— ")
		if rest == line {
			continue
		}
		name, b64, ok := strings.Cut(rest, " ")
		if !ok || name != v.Name() {
			continue
		}
		raw, err := decodeB64(b64)
		if err != nil || len(raw) < 5 || binary.BigEndian.Uint32(raw) != v.KeyHash() {
			continue
		}
		return text, b64
	}
	return text, ""
}

// Receipt is a parsed c2sp.org/tlog-proof@v1 text.
type Receipt struct {
	Index      int64
	Proof      tlog.RecordProof
	Checkpoint []byte
}

const receiptHeader = "c2sp.org/tlog-proof@v1"

func parseReceipt(text []byte) (*Receipt, error) {
	rest := string(text)
	next := func() (string, bool) {
		line, after, ok := strings.Cut(rest, "\n")
		if !ok {
			return "", false
		}
		rest = after
		return line, true
	}
	line, ok := next()
	if !ok || line != receiptHeader {
		return nil, fmt.Errorf("first line is not %q", receiptHeader)
	}
	if line, ok = next(); !ok {
		return nil, errors.New("truncated receipt")
	}
	if strings.HasPrefix(line, "extra ") {
		// Custody writes none and ignores one; it must still be base64.
		if _, err := decodeB64(strings.TrimPrefix(line, "extra ")); err != nil {
			return nil, fmt.Errorf("extra line: %v", err)
		}
		if line, ok = next(); !ok {
			return nil, errors.New("truncated receipt")
		}
	}
	if !strings.HasPrefix(line, "index ") {
		return nil, fmt.Errorf("expected index line, got %q", line)
	}
	index, err := parseDecimal(strings.TrimPrefix(line, "index "))
	if err != nil {
		return nil, fmt.Errorf("index: %v", err)
	}
	r := &Receipt{Index: index}
	for {
		if line, ok = next(); !ok {
			return nil, errors.New("receipt has no empty line before the checkpoint")
		}
		if line == "" {
			break
		}
		h, err := parseHash64(line)
		if err != nil {
			return nil, fmt.Errorf("proof hash %d: %v", len(r.Proof), err)
		}
		r.Proof = append(r.Proof, h)
		if len(r.Proof) > 63 {
			return nil, errors.New("inclusion proof too long")
		}
	}
	if rest == "" {
		return nil, errors.New("receipt has no checkpoint")
	}
	r.Checkpoint = []byte(rest)
	return r, nil
}

// verifyReceipt checks a receipt against entry bytes: the checkpoint is signed
// by v with origin == key name, and the inclusion proof leads from the entry's
// leaf hash at the index to the checkpoint root.
func verifyReceipt(entry, proof []byte, v note.Verifier) (*Receipt, *Checkpoint, error) {
	r, err := parseReceipt(proof)
	if err != nil {
		return nil, nil, coded(codeProofMalformed, "%v", err)
	}
	cp, err := openCheckpoint(r.Checkpoint, v)
	if err != nil {
		// A bundle reports this as PROOF_CHECKPOINT_INVALID; alone, the checkpoint's own code.
		return r, nil, err
	}
	if err := checkInclusion(r.Proof, cp.Size, cp.Root, r.Index, tlog.RecordHash(entry)); err != nil {
		return r, cp, coded(codeProofInclusion, "%v", err)
	}
	return r, cp, nil
}

func checkInclusion(p tlog.RecordProof, size int64, root tlog.Hash, index int64, leaf tlog.Hash) error {
	if index < 0 || index >= size {
		return fmt.Errorf("index %d not below tree size %d", index, size)
	}
	if err := tlog.CheckRecord(p, size, root, index, leaf); err != nil {
		return fmt.Errorf("inclusion proof for index %d in tree %d: %v", index, size, err)
	}
	return nil
}

// emptyRoot is the RFC 6962 hash of the empty tree, SHA-256 of nothing.
// (tlog.TreeHash(0) returns all zeros instead, so size 0 is special-cased.)
var emptyRoot = tlog.Hash(sha256.Sum256(nil))

// checkConsistency checks an RFC 9162 consistency proof from (oldSize, oldRoot)
// to (newSize, newRoot).
func checkConsistency(p tlog.TreeProof, oldSize int64, oldRoot tlog.Hash, newSize int64, newRoot tlog.Hash) error {
	switch {
	case oldSize < 0 || newSize < oldSize:
		return fmt.Errorf("old tree size %d is larger than new tree size %d", oldSize, newSize)
	case oldSize == 0:
		if len(p) != 0 || oldRoot != emptyRoot {
			return errors.New("consistency from the empty tree needs an empty proof and the empty root")
		}
		return nil
	}
	if err := tlog.CheckTree(p, newSize, newRoot, oldSize, oldRoot); err != nil {
		return fmt.Errorf("consistency proof %d -> %d: %v", oldSize, newSize, err)
	}
	return nil
}

// merkleTree computes RFC 6962 roots of every prefix of a list of leaf hashes
// with tlog's stored-hash layout.
type merkleTree struct {
	stored []tlog.Hash
	n      int64
}

func (t *merkleTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(t.stored)) {
			return nil, fmt.Errorf("stored hash %d not available", x)
		}
		out[i] = t.stored[x]
	}
	return out, nil
}

func (t *merkleTree) add(leaf tlog.Hash) error {
	hs, err := tlog.StoredHashesForRecordHash(t.n, leaf, t)
	if err != nil {
		return err
	}
	t.stored = append(t.stored, hs...)
	t.n++
	return nil
}

func (t *merkleTree) root(size int64) (tlog.Hash, error) {
	if size == 0 {
		return emptyRoot, nil
	}
	if size < 0 || size > t.n {
		return tlog.Hash{}, fmt.Errorf("tree has %d leaves, asked for root of %d", t.n, size)
	}
	return tlog.TreeHash(size, t)
}
