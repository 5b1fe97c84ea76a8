package main

// Evidence bundles, from docs/format.md ("Evidence bundle custody.bundle/v1",
// "Verifying a bundle", "Session completeness").

import (
	"fmt"
	"sort"
	"strconv"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const bundleFormat = "custody.bundle/v1"

// Failure is one named failure; Record is -1 for the bundle as a whole.
type Failure struct {
	Record int
	Code   string
	Detail string
}

func (f Failure) String() string {
	if f.Record < 0 {
		return fmt.Sprintf("bundle: %s: %s", f.Code, f.Detail)
	}
	return fmt.Sprintf("record %d: %s: %s", f.Record, f.Code, f.Detail)
}

// Report is the outcome of verifying a bundle.
type Report struct {
	Verdict  string // complete, intact or failed
	Records  int
	Sessions map[string]bool // session id -> sealed
	Redacted []string        // "record N: /path"
	Failures []Failure
}

func (r *Report) fail(rec int, code, format string, args ...interface{}) {
	r.Failures = append(r.Failures, Failure{Record: rec, Code: code, Detail: fmt.Sprintf(format, args...)})
}

// Codes returns the distinct failure codes in order of first appearance.
func (r *Report) Codes() []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range r.Failures {
		if !seen[f.Code] {
			seen[f.Code] = true
			out = append(out, f.Code)
		}
	}
	return out
}

type recordState struct {
	entry   *Entry
	receipt *Receipt
	cp      *Checkpoint // the receipt's checkpoint, when valid
	checked bool        // the inclusion proof was checked
	leafOK  bool        // ... and it held
	extra   bool        // belongs to another session than bundle.session
}

// verifyBundle runs "Verifying a bundle" on a parsed bundle object with the
// pinned verifier key vkey (not the bundle's own verifierKey).
func verifyBundle(b map[string]interface{}, vkey string) *Report {
	rep := &Report{Sessions: map[string]bool{}}
	defer func() {
		switch {
		case len(rep.Failures) > 0:
			rep.Verdict = "failed"
		case len(rep.Sessions) == 0:
			// Nothing sealed is shown complete: an empty bundle proves only itself.
			rep.Verdict = "intact"
		default:
			rep.Verdict = "complete"
			for _, sealed := range rep.Sessions {
				if !sealed {
					rep.Verdict = "intact"
				}
			}
		}
	}()

	v, err := note.NewVerifier(vkey)
	if err != nil {
		rep.fail(-1, codeVerifierKeyInvalid, "pinned verifier key: %v", err)
		return rep
	}
	if f, _ := b["format"].(string); f != bundleFormat {
		rep.fail(-1, codeBundleMalformed, "format is %q, want %q", b["format"], bundleFormat)
		return rep
	}
	bkey, ok := b["verifierKey"].(string)
	if !ok {
		rep.fail(-1, codeBundleMalformed, "verifierKey missing")
	} else if bkey != vkey {
		// The bundle's key is a convenience; a pinned key that differs is reported.
		rep.fail(-1, codeKeyMismatch, "bundle verifierKey %q differs from pinned key %q", bkey, vkey)
	}
	var sessionFilter *string
	if s, present := b["session"]; present {
		str, ok := s.(string)
		if !ok {
			rep.fail(-1, codeBundleMalformed, "session must be a string")
		} else {
			sessionFilter = &str
		}
	}
	records, ok := b["records"].([]interface{})
	if !ok {
		rep.fail(-1, codeBundleMalformed, "records missing or not an array")
		return rep
	}
	rep.Records = len(records)
	consistency := map[int64]tlog.TreeProof{}
	if c, present := b["consistency"]; present {
		cm, ok := c.(map[string]interface{})
		if !ok {
			rep.fail(-1, codeBundleMalformed, "consistency must be an object")
		}
		for k, val := range cm {
			size, err := parseDecimal(k)
			p, err2 := hashList(val)
			if err != nil || err2 != nil {
				rep.fail(-1, codeProofMalformed, "consistency[%s]: malformed (%v %v)", k, err, err2)
				continue
			}
			consistency[size] = p
		}
	}

	// Step 1: the checkpoint.
	var cp *Checkpoint
	cpText, _ := b["checkpoint"].(string)
	if cpText == "" {
		rep.fail(-1, codeBundleMalformed, "checkpoint missing")
	} else if cp, err = openCheckpoint([]byte(cpText), v); err != nil {
		code := codeOf(err)
		if code == codeSignatureInvalid && checkpointAltered([]byte(cpText), records, v) {
			code = codeCheckpointAltered
		}
		rep.fail(-1, code, "checkpoint: %v", err)
		cp = nil
	}

	// Step 2: records, entries and receipts.
	states := make([]*recordState, len(records))
	for i, rv := range records {
		st := &recordState{}
		states[i] = st
		ro, ok := rv.(map[string]interface{})
		if !ok {
			rep.fail(i, codeBundleMalformed, "record is not an object")
			continue
		}
		es, ok := ro["entry"].(string)
		if !ok {
			rep.fail(i, codeEntryMalformed, "entry missing")
		} else if eb, err := decodeB64(es); err != nil {
			rep.fail(i, codeEntryMalformed, "entry is not base64: %v", err)
		} else if e, err := parseEntry(eb); err != nil {
			rep.fail(i, codeEntryMalformed, "%v", err)
		} else {
			st.entry = e
		}
		ps, ok := ro["proof"].(string)
		if !ok {
			rep.fail(i, codeProofMalformed, "proof missing")
			continue
		}
		r, err := parseReceipt([]byte(ps))
		if err != nil {
			rep.fail(i, codeProofMalformed, "%v", err)
			continue
		}
		st.receipt = r
		rcp, err := openCheckpoint(r.Checkpoint, v)
		if err != nil {
			rep.fail(i, codeProofCheckpoint, "receipt checkpoint: %v", err)
			continue
		}
		st.cp = rcp
		if cp != nil {
			switch {
			case rcp.Size == cp.Size:
				if rcp.Root != cp.Root {
					rep.fail(i, codeProofConsistency, "receipt checkpoint has the bundle checkpoint's size %d but a different root", cp.Size)
				}
			case rcp.Size > cp.Size:
				rep.fail(i, codeProofCheckpoint, "receipt checkpoint size %d is larger than the bundle checkpoint's %d", rcp.Size, cp.Size)
			default:
				p, ok := consistency[rcp.Size]
				if !ok {
					rep.fail(i, codeProofConsistency, "no consistency proof from size %d to %d", rcp.Size, cp.Size)
				} else if err := checkConsistency(p, rcp.Size, rcp.Root, cp.Size, cp.Root); err != nil {
					rep.fail(i, codeProofConsistency, "%v", err)
				}
			}
		}
		if st.entry != nil {
			st.checked = true
			// A failure is classified once the chain is known (ENTRY_TAMPERED vs PROOF_INCLUSION_FAILED).
			st.leafOK = checkInclusion(r.Proof, rcp.Size, rcp.Root, r.Index, tlog.RecordHash(st.entry.Bytes)) == nil
		}
	}

	// What the chain committed to: the prev of (session, seq+1) names the digest of (session, seq).
	committed := map[string]map[int64]string{}
	for _, st := range states {
		if st.entry != nil && st.entry.HasSession && st.entry.Prev != nil {
			m := committed[st.entry.SessionID]
			if m == nil {
				m = map[int64]string{}
				committed[st.entry.SessionID] = m
			}
			m[st.entry.Seq-1] = *st.entry.Prev
		}
	}
	tampered := map[int]bool{}
	for i, st := range states {
		if !st.checked || st.leafOK {
			continue
		}
		e := st.entry
		if d, ok := committed[e.SessionID][e.Seq]; ok && e.HasSession && d != e.Digest {
			tampered[i] = true
			rep.fail(i, codeEntryTampered, "inclusion proof fails and the session chain committed to digest %s, not %s", d, e.Digest)
		} else {
			rep.fail(i, codeProofInclusion, "inclusion proof for index %d does not lead to the receipt checkpoint root", st.receipt.Index)
		}
	}

	// Step 3: disclosures.
	for i, rv := range records {
		ro, _ := rv.(map[string]interface{})
		st := states[i]
		opened := map[string]bool{}
		if ds, present := ro["disclosures"]; present {
			arr, ok := ds.([]interface{})
			if !ok {
				rep.fail(i, codeDisclosureMalformed, "disclosures must be an array")
			}
			for j, dv := range arr {
				s, ok := dv.(string)
				if !ok {
					rep.fail(i, codeDisclosureMalformed, "disclosure %d is not a string", j)
					continue
				}
				d, err := decodeDisclosure(s)
				if err != nil {
					rep.fail(i, codeDisclosureMalformed, "disclosure %d: %v", j, err)
					continue
				}
				if st.entry == nil {
					continue
				}
				if err := openDisclosure(st.entry.Value, d); err != nil {
					rep.fail(i, codeDisclosureMismatch, "disclosure %d: %v", j, err)
					continue
				}
				opened[d.Path] = true
			}
		}
		if st.entry != nil {
			var all []string
			findCommitments(st.entry.Value, "", &all)
			sort.Strings(all)
			for _, p := range all {
				if !opened[p] {
					rep.Redacted = append(rep.Redacted, "record "+strconv.Itoa(i)+": "+p)
				}
			}
		}
	}

	// Step 4: sessions.
	type link struct {
		rec int
		st  *recordState
	}
	bySession := map[string][]link{}
	var order []string
	for i, st := range states {
		e := st.entry
		if e == nil {
			continue
		}
		if sessionFilter != nil && (!e.HasSession || e.SessionID != *sessionFilter) {
			st.extra = true
			rep.fail(i, codeChainExtra, "record does not belong to session %s", *sessionFilter)
			continue
		}
		if !e.HasSession {
			continue
		}
		if _, ok := bySession[e.SessionID]; !ok {
			order = append(order, e.SessionID)
		}
		bySession[e.SessionID] = append(bySession[e.SessionID], link{i, st})
	}
	for _, sid := range order {
		given := bySession[sid]
		// Records that step back in seq relative to the bundle's (log) order.
		for k := 1; k < len(given); k++ {
			if given[k].st.entry.Seq < given[k-1].st.entry.Seq {
				rep.fail(given[k].rec, codeChainOrder, "session %s: seq %d after seq %d", sid, given[k].st.entry.Seq, given[k-1].st.entry.Seq)
			}
		}
		// Check the chain in seq order: a gap is a seq that no record holds.
		links := append([]link(nil), given...)
		sort.SliceStable(links, func(i, j int) bool { return links[i].st.entry.Seq < links[j].st.entry.Seq })
		sealed := false
		var prev *link
		for k := range links {
			cur := &links[k]
			e := cur.st.entry
			if sealed {
				rep.fail(cur.rec, codeChainExtra, "session %s: seq %d follows its seal", sid, e.Seq)
				continue
			}
			switch {
			case prev == nil && e.Seq != 1:
				rep.fail(cur.rec, codeChainGap, "session %s starts at seq %d, not 1", sid, e.Seq)
			case prev != nil && e.Seq == prev.st.entry.Seq:
				rep.fail(cur.rec, codeChainOrder, "session %s: seq %d repeats", sid, e.Seq)
			case prev != nil && e.Seq > prev.st.entry.Seq+1:
				rep.fail(cur.rec, codeChainGap, "session %s: seq %d follows seq %d", sid, e.Seq, prev.st.entry.Seq)
			}
			// Envelope validation already ties prev == null to seq == 1.
			if prev != nil && e.Prev != nil && e.Seq == prev.st.entry.Seq+1 && *e.Prev != prev.st.entry.Digest && !tampered[prev.rec] {
				rep.fail(cur.rec, codeChainLink, "session %s: prev %s != digest %s of seq %d", sid, *e.Prev, prev.st.entry.Digest, prev.st.entry.Seq)
			}
			if prev != nil && cur.st.receipt != nil && prev.st.receipt != nil && cur.st.receipt.Index <= prev.st.receipt.Index {
				rep.fail(cur.rec, codeChainOrder, "session %s: seq %d is at log index %d, not after seq %d at %d", sid, e.Seq, cur.st.receipt.Index, prev.st.entry.Seq, prev.st.receipt.Index)
			}
			if e.Type == "session.closed" {
				sealed = true
				if e.Seal == nil || e.Seal.Count != e.Seq || e.Prev == nil || e.Seal.Head != *e.Prev {
					rep.fail(cur.rec, codeChainSeal, "session %s: seal does not match its seq and prev", sid)
				}
			}
			prev = cur
		}
		rep.Sessions[sid] = sealed
	}
	// A bundle that names its session must hold that session's entries.
	if sessionFilter != nil {
		if _, held := rep.Sessions[*sessionFilter]; !held {
			rep.fail(-1, codeChainGap, "the bundle holds no entry of session %s", *sessionFilter)
		}
	}
	sort.SliceStable(rep.Failures, func(i, j int) bool { return rep.Failures[i].Record < rep.Failures[j].Record })
	return rep
}

// checkpointAltered reports whether some receipt carries a checkpoint validly
// signed by v, with the same signature as the bundle checkpoint but a
// different text.
func checkpointAltered(bundleCP []byte, records []interface{}, v note.Verifier) bool {
	text, sig := signatureFor(bundleCP, v)
	if sig == "" {
		return false
	}
	for _, rv := range records {
		ro, _ := rv.(map[string]interface{})
		ps, _ := ro["proof"].(string)
		r, err := parseReceipt([]byte(ps))
		if err != nil {
			continue
		}
		rcp, err := openCheckpoint(r.Checkpoint, v)
		if err != nil {
			continue
		}
		rtext, rsig := signatureFor(r.Checkpoint, v)
		if rsig == sig && rtext != text && rcp != nil {
			return true
		}
	}
	return false
}

// hashList decodes a JSON array of base64 hashes.
func hashList(v interface{}) ([]tlog.Hash, error) {
	arr, ok := v.([]interface{})
	if !ok {
		return nil, fmt.Errorf("not an array")
	}
	out := make([]tlog.Hash, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("element %d is not a string", i)
		}
		h, err := parseHash64(s)
		if err != nil {
			return nil, fmt.Errorf("element %d: %v", i, err)
		}
		out = append(out, h)
	}
	return out, nil
}
